"""Pure numerical kernels: no MPI, no files, no configuration."""
