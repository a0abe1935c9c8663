"""How the service is used: the command line (`cli`), the HTTP API (`api`, served by `serving`, its predictions
batched by `batching`), the polling worker (`polling`) with its Prometheus metrics (`metrics`), health checks
(`health`), logs (`logs`), and the factory that builds a worker from the settings (`factory`)."""
