"""``intrascribe``: the command-line client of the Intrascribe api (log in, transcribe a recording
with a progress bar fed by the job's Server-Sent Events, summarise a session, list sessions).
Run it as ``intrascribe`` (bin/intrascribe, linked into the serve environment by ``make run``) or
``python -m intrascribe_cli``."""
