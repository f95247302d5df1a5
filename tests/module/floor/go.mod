module dagger/floor

go 1.25

// Dagger v1.0.0-beta.10's codegen needs this pin, as the project's module does (dagger/go.mod, docs/engine.md).
replace github.com/dagger/otel-go => github.com/dagger/otel-go v1.43.1-0.20260515012101-af7cd0684887
