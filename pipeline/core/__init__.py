"""What every stage shares: the config and its schema, the CAM method registry, the artifact store and
provenance, devices and threads, worker pools, interruption, the training loop, shards and gather."""
