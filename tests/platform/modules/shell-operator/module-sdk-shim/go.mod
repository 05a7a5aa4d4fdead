module github.com/deckhouse/module-sdk

go 1.26
