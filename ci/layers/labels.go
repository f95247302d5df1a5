package layers

// OCI and imagemode label keys every built image carries: with them the chain of a family (which layer, built at
// which commit, FROM which parent digest, for which profile) can be checked from the registry alone.
const (
	LabelRevision   = "org.opencontainers.image.revision"
	LabelBaseName   = "org.opencontainers.image.base.name"
	LabelBaseDigest = "org.opencontainers.image.base.digest"
	LabelSource     = "org.opencontainers.image.source"
	LabelTitle      = "org.opencontainers.image.title"
	LabelLayer      = "io.imagemode.layer"
	LabelParent     = "io.imagemode.parent"
	LabelProfile    = "io.imagemode.profile"
	LabelInputs     = "io.imagemode.inputs"
)
