"""Server-side code of the Triton models: launcher, network runtimes, request/response plumbing."""
