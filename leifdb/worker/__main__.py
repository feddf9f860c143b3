"""``python -m leifdb.worker``: a worker process (see ``leifdb.worker.main``)."""

from leifdb.worker.main import main

main()
