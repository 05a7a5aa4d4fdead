// Package pkg stands in for github.com/deckhouse/module-sdk/pkg, which shell-operator v1.20.x
// requires (v0.11.1) and the Go module proxy does not serve (403). shell-operator's
// pkg/kube/object_patch uses four of its interface types, and nothing else of the module; their
// implementations and every use are shell-operator's own code. The method sets below are the
// ones shell-operator's types implement and call, so the operator built against this is the
// upstream code unchanged.
package pkg

// PatchCollectorOperation is one object operation from a hook's $KUBERNETES_PATCH_PATH.
type PatchCollectorOperation interface {
	Description() string
}

// PatchCollectorOptionApplier is what an option changes on an operation.
type PatchCollectorOptionApplier interface {
	WithSubresource(subresource string)
	WithIgnoreMissingObject(ignore bool)
	WithIgnoreHookError(ignore bool)
}

// PatchCollectorOption changes an operation.
type PatchCollectorOption interface {
	Apply(o PatchCollectorOptionApplier)
}

// PatchCollector gathers operations (Go hooks; shell hooks write files instead).
type PatchCollector interface {
	Operations() []PatchCollectorOperation
}
