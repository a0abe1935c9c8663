"""One cycle of the service (`worker`): pull, decide whether to train, train in a child process (`training`),
pre-annotate and push; what would happen without doing it (`dry_run`); and the records a cycle hands on (`records`)."""
