"""The command line `lumi`: a thin face over the SDK."""
