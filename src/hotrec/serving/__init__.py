"""MP-Rec serving: paths, predictor, latency profile, path-selection policies, HTTP server,
load generator. Heavy imports (torch, fastapi) stay inside the modules that need them."""
