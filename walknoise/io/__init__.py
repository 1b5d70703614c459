"""Results files: one netCDF layer (``netcdf``), the one-writer lock (``lock``)."""
