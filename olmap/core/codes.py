"""Reserved values of olmap's 2D class masks (shared/CLI.md), shared by every stage."""

#: Label value of pixels no rule claims.
UNCLASSIFIED = 0
#: Label value of pixels to ignore in training (cracks, holes, no EDS data); also nodata.
IGNORE = 255
