"""The service around the model: it keeps state, runs cycles, judges versions, and is used through a command line, an
HTTP API and a polling worker. Start at `app.cli` (every command) or `cycle.worker` (what one cycle does).

- `config`: every setting, declared once with its default; `signals`: stop requests (SIGTERM, SIGINT).
- `store`: what is kept on disk: the model registry, the SQLite ledger and asset cache, the pool's scratch folder,
  the polling worker's heartbeat.
- `quality`: how good a version is: evaluation on a file, the promotion gate, the HTML report, label issues, the
  labelling-campaign simulation.
- `cycle`: one cycle (pull, decide, train in a child process, pre-annotate, push) and its records; the dry run.
- `app`: how it is used: the command line, the HTTP API and its server, the polling loop, Prometheus metrics, health
  checks, logs, and the factory that builds a worker from the settings.

Each subpackage uses only those listed before it (tests/test_layout.py).
"""
