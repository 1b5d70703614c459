"""Results files: one netCDF layer (``netcdf``), the one-writer lock (``lock``), the root
attributes every file carries (``provenance``) and the base of every result (``result``)."""
