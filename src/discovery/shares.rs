//! Fair shares of one budget between federations (README, "Security"): the trust bundle's
//! bytes, and the services a run imports across the fleet. A peer that wants more than its
//! share costs itself, never a federation that stays within its own.
//!
//! The share is max-min fair ("water-filling"): with capacity `C` and federations wanting
//! `d_1 … d_n`, the share is the largest `s` with `Σ min(d_i, s) ≤ C`. A federation wanting
//! at most `s` gets everything it wants; the others get `s` each. So the share is at least
//! `C / n`, grows as the others want less, and is never taken by someone else's excess.
//!
//! Demands come in indivisible items (a root, a service) in each federation's priority order:
//! a federation gets the longest prefix of its items that fits its share, so equal federations
//! get equal grants. When the share is smaller than some federations' first item (many
//! federations, each wanting more than `C / n`), what the share line leaves unused goes to
//! those first items that still fit — items already installed first, then by order — so the
//! capacity is never left empty while first items wait, and a first item installed stays.

/// What [`allocate`] grants.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Allocation {
    /// The share each federation was measured against.
    pub share: usize,
    /// Per federation, how many of its items (a prefix) it gets.
    pub granted: Vec<usize>,
}

/// One item a federation wants: its cost, and whether it is already in place (an item in place
/// goes before a new one when the room below the share line is handed out).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Item {
    pub cost: usize,
    pub in_place: bool,
}

/// The longest prefix of `costs` (prefix sums `sums`) within `s`.
fn prefix_within(sums: &[usize], s: usize) -> usize {
    sums.partition_point(|&x| x <= s)
}

/// Decides the grants of `demands` (each federation's items in priority order) within
/// `capacity`. Pure and deterministic: the same input always gives the same grants.
pub(crate) fn allocate(demands: &[Vec<Item>], capacity: usize) -> Allocation {
    let sums: Vec<Vec<usize>> = demands
        .iter()
        .map(|d| {
            d.iter()
                .scan(0usize, |acc, i| {
                    *acc = acc.saturating_add(i.cost);
                    Some(*acc)
                })
                .collect()
        })
        .collect();
    let used_at = |s: usize| -> usize {
        sums.iter()
            .map(|p| match prefix_within(p, s) {
                0 => 0,
                k => p[k - 1],
            })
            .fold(0usize, usize::saturating_add)
    };
    // The share only matters at prefix sums: the largest one whose usage fits, else 0.
    let mut levels: Vec<usize> = sums.iter().flatten().copied().collect();
    levels.sort_unstable();
    levels.dedup();
    let fits = levels.partition_point(|&s| used_at(s) <= capacity);
    let share = fits.checked_sub(1).map_or(0, |k| levels[k]);
    let mut granted: Vec<usize> = sums.iter().map(|p| prefix_within(p, share)).collect();
    let mut used = used_at(share);
    // The room below the share line: first items that did not fit the share, in a fixed order.
    let mut next: Vec<(bool, usize)> = demands
        .iter()
        .enumerate()
        .filter(|(i, _)| granted[*i] == 0)
        .filter_map(|(i, d)| Some((!d.first()?.in_place, i)))
        .collect();
    next.sort_unstable();
    for (_, i) in next {
        let cost = demands[i][0].cost;
        if used.saturating_add(cost) <= capacity {
            used += cost;
            granted[i] += 1;
        }
    }
    Allocation { share, granted }
}

/// The max-min fair share of `capacity` between `demands` of unit items (a count each): the
/// largest share `s` with `Σ min(d, s) ≤ capacity` (`capacity` itself when every demand fits
/// whole). Every demand at most `s` fits whole.
pub(crate) fn level(demands: &[usize], capacity: usize) -> usize {
    let mut sorted = demands.to_vec();
    sorted.sort_unstable();
    let mut left = capacity;
    for (k, &d) in sorted.iter().enumerate() {
        let rest = sorted.len() - k;
        if d.saturating_mul(rest) > left {
            return left / rest;
        }
        left -= d;
    }
    // Everyone fits: no share binds anyone.
    capacity
}

#[cfg(test)]
mod tests {
    use super::*;

    fn new(costs: &[usize]) -> Vec<Item> {
        costs
            .iter()
            .map(|&cost| Item {
                cost,
                in_place: false,
            })
            .collect()
    }

    #[test]
    fn the_level_of_counts_is_max_min_fair() {
        assert_eq!(level(&[10, 200, 200], 100), 45);
        assert_eq!(level(&[10, 20], 100), 100);
        assert_eq!(level(&[2000; 500], 50_000), 100);
        assert_eq!(level(&[], 7), 7);
        assert_eq!(level(&[5, 5, 5], 14), 4);
    }

    #[test]
    fn everything_fits_everyone_gets_everything() {
        let a = allocate(&[new(&[3, 3]), new(&[1]), vec![]], 100);
        assert_eq!(a.granted, [2, 1, 0]);
        assert_eq!(a.share, 6);
    }

    #[test]
    fn the_hog_loses_its_newest_excess_and_the_others_keep_all() {
        // Capacity 30: b (2) and c (1) are far within the share; a wants 8 × 10.
        let a = allocate(&[new(&[10; 8]), new(&[1, 1]), new(&[1])], 30);
        assert_eq!(a.granted, [2, 2, 1]);
        assert_eq!(a.share, 20);
    }

    #[test]
    fn equal_federations_get_equal_grants() {
        let hogs: Vec<Vec<Item>> = (0..12).map(|_| new(&[9; 8])).collect();
        let mut demands = hogs.clone();
        demands.push(new(&[1, 1]));
        // Room for 7 roots each and the small one's two, and 5 more roots.
        let a = allocate(&demands, 12 * 9 * 7 + 2 + 5 * 9);
        assert_eq!(&a.granted[..12], &[7; 12]);
        assert_eq!(a.granted[12], 2);
    }

    #[test]
    fn the_room_below_the_line_is_used_installed_items_first() {
        // Three federations want one item of 5 each; 12 holds two of them.
        let mut c = new(&[5]);
        c[0].in_place = true;
        let a = allocate(&[new(&[5]), new(&[5]), c], 12);
        assert_eq!(a.granted, [1, 0, 1]);
        assert_eq!(a.share, 0);
        // Without anything installed, the first ones by order.
        let a = allocate(&[new(&[5]), new(&[5]), new(&[5])], 12);
        assert_eq!(a.granted, [1, 1, 0]);
    }

    #[test]
    fn a_federation_within_the_share_is_never_cut_by_anothers_excess() {
        // However much the hog wants, the small one's demand is met while n × its demand fits.
        for hog in [10, 100, 10_000] {
            let a = allocate(&[new(&[hog; 8]), new(&[4, 4])], 20);
            assert_eq!(a.granted[1], 2, "hog {hog}");
        }
        assert_eq!(allocate(&[], 10).granted, Vec::<usize>::new());
        assert_eq!(allocate(&[new(&[11])], 10).granted, [0]);
    }
}
