"""The ``intrascribe`` commands (Typer + Rich). Output files and summaries go to stdout (or ``-o``);
progress, notes and errors to stderr, so ``intrascribe transcribe x.m4a --format srt > x.srt`` works."""

from __future__ import annotations

import os
import sys
import time
from enum import Enum
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markdown import Markdown
from rich.markup import escape
from rich.progress import (
    BarColumn,
    Progress,
    SpinnerColumn,
    TaskProgressColumn,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table

from intrascribe_cli.client import (
    DEFAULT_URL,
    Api,
    CLIError,
    credentials_path,
    detail_of,
    load_credentials,
    save_credentials,
)

err = Console(stderr=True)
out = Console()

app = typer.Typer(
    name="intrascribe",
    help=(
        "Transcribe meetings with an Intrascribe server from the command line.\n\n"
        "Start a local server with `make run`; then log in once, transcribe, summarise:\n\n"
        "* `intrascribe login`\n"
        "* `intrascribe transcribe meeting.m4a --format srt -o meeting.srt`\n"
        "* `intrascribe summarize SESSION_ID`\n"
        "* `intrascribe export SESSION_ID --format vtt`\n"
        "* `intrascribe sessions`\n\n"
        "Run `intrascribe COMMAND --help` for a command's options."
    ),
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode="markdown",
)


class Format(str, Enum):
    srt = "srt"
    vtt = "vtt"
    txt = "txt"
    json = "json"
    md = "md"


class State:
    url: str | None = None
    api_key: str | None = None


state = State()

UrlOption = Annotated[
    str | None,
    typer.Option(
        "--url",
        envvar="INTRASCRIBE_URL",
        help=f"The server's address (default: the one you logged in to, else {DEFAULT_URL}).",
        show_default=False,
    ),
]
ApiKeyOption = Annotated[
    str | None,
    typer.Option(
        "--api-key",
        envvar="INTRASCRIBE_API_KEY",
        help="An API key (isk_...) to use instead of the stored login.",
        show_default=False,
    ),
]


@app.callback()
def _global(url: UrlOption = None, api_key: ApiKeyOption = None) -> None:
    state.url = url
    state.api_key = api_key


def _api(require_auth: bool = True) -> Api:
    """The api with the credential to use: --api-key / INTRASCRIBE_API_KEY, else the stored one."""
    stored = load_credentials()
    url = state.url or stored.get("url") or DEFAULT_URL
    credential = state.api_key
    if (
        credential is None
        and stored
        and (not state.url or stored.get("url", "").rstrip("/") == url.rstrip("/"))
    ):
        credential = stored.get("api_key") or stored.get("access_token")
        expires_at = stored.get("expires_at")
        if not stored.get("api_key") and isinstance(expires_at, int | float) and expires_at < time.time():
            raise CLIError(f"your login to {url} has expired: run `intrascribe login`")
    if require_auth and not credential:
        raise CLIError(
            f"not logged in to {url}: run `intrascribe login` (or pass --api-key / set INTRASCRIBE_API_KEY)"
        )
    return Api(url, credential)


@app.command()
def login(
    email: Annotated[str | None, typer.Option(help="Your account's email (asked when left out).")] = None,
    password: Annotated[
        str | None,
        typer.Option(
            envvar="INTRASCRIBE_PASSWORD",
            help="Your password (asked, hidden, when left out).",
            show_default=False,
        ),
    ] = None,
    register: Annotated[
        bool, typer.Option("--register", help="Create the account first (embedded auth).")
    ] = False,
) -> None:
    """Log in with email and password (or store an API key given with --api-key).

    The token (or key) is saved in ~/.config/intrascribe/credentials.json, readable only by you.
    """
    url = state.url or load_credentials().get("url") or DEFAULT_URL
    if state.api_key:
        api = Api(url, state.api_key)
        try:
            api.request("GET", "/api/v1/sessions/", params={"limit": 1})
        finally:
            api.close()
        path = save_credentials({"url": url, "api_key": state.api_key})
        err.print(f"API key checked against {url} and saved in {path}")
        return
    if email is None:
        email = typer.prompt("Email")
    if password is None:
        password = typer.prompt("Password", hide_input=True)
    api = Api(url)
    try:
        body = {"email": email, "password": password}
        if register:
            r = api.request("POST", "/api/v1/auth/register", json=body, expect=(201, 401, 403, 409, 422))
            if r.status_code != 201:
                raise CLIError(f"could not register {email}: {detail_of(r)}")
        else:
            r = api.request("POST", "/api/v1/auth/login", json=body, expect=(200, 401, 403, 422, 429))
            if r.status_code == 401:
                raise CLIError(f"wrong email or password for {email} at {url}")
            if r.status_code != 200:
                raise CLIError(f"login refused ({r.status_code}): {detail_of(r)}")
    finally:
        api.close()
    token = r.json()
    path = save_credentials(
        {
            "url": url,
            "email": email,
            "access_token": token["access_token"],
            "expires_at": token.get("expires_at"),
        }
    )
    err.print(f"logged in to {url} as {email}; token saved in {path}")


def _progress() -> Progress:
    return Progress(
        SpinnerColumn(),
        TextColumn("{task.description:<12}"),
        BarColumn(),
        TaskProgressColumn(),
        TimeElapsedColumn(),
        console=err,
        transient=False,
    )


def _follow(api: Api, job_id: str, what: str) -> dict[str, Any]:
    """Follow the job with a progress bar; a failed or cancelled job is a CLIError with its reason."""
    with _progress() as progress:
        task = progress.add_task("queued", total=None)

        def update(ev: dict[str, Any]) -> None:
            stage = ev.get("stage") or ev.get("status")
            fields: dict[str, Any] = {}
            if stage:
                fields["description"] = str(stage)
            if ev.get("total"):
                fields["total"] = ev["total"]
            if ev.get("done") is not None:
                fields["completed"] = ev["done"]
            if ev.get("status") == "completed":
                fields["completed"] = progress.tasks[0].total or 1
                fields["total"] = progress.tasks[0].total or 1
            progress.update(task, **fields)

        job = api.follow(job_id, update)
    if job["status"] != "completed":
        error = job.get("error") or {}
        reason = error.get("message") if isinstance(error, dict) else str(error)
        code = f" [{error.get('code')}]" if isinstance(error, dict) and error.get("code") else ""
        raise CLIError(f"the {what} job {job_id} {job['status']}: {reason or 'no reason given'}{code}")
    return job


@app.command()
def transcribe(
    audio: Annotated[
        Path,
        typer.Argument(
            exists=True,
            dir_okay=False,
            readable=True,
            help="The recording: any audio file (m4a, mp3, wav, ogg, ...).",
        ),
    ],
    format: Annotated[Format, typer.Option("--format", "-f", help="Output format.")] = Format.txt,  # noqa: A002
    output: Annotated[
        Path | None,
        typer.Option("--output", "-o", help="Write here instead of to the terminal.", dir_okay=False),
    ] = None,
    language: Annotated[
        str | None, typer.Option(help="Spoken language (zh, en, ja, ko, yue, ...); detected when left out.")
    ] = None,
    speakers: Annotated[
        int | None, typer.Option(min=1, help="How many people speak, if you know (else estimated).")
    ] = None,
    title: Annotated[str | None, typer.Option(help="The session's title (default: the file name).")] = None,
) -> None:
    """Upload a recording, follow its transcription with a progress bar, write the transcript.

    Example: `intrascribe transcribe meeting.m4a --format srt -o meeting.srt`
    """
    api = _api()
    try:
        form: dict[str, str] = {}
        if language:
            form["language"] = language
        if speakers:
            form["num_speakers"] = str(speakers)
        if title:
            form["title"] = title
        err.print(f"uploading {audio} ({audio.stat().st_size / 1e6:.1f} MB) to {api.url} ...")
        with audio.open("rb") as f:
            r = api.request(
                "POST",
                "/api/v1/transcriptions/batch",
                files={"audio_file": (audio.name, f, "application/octet-stream")},
                data=form,
                expect=(202, 413, 415, 422, 429),
                timeout=None,
            )
        if r.status_code == 415:
            raise CLIError(f"{audio} is not an audio file the server can read: {detail_of(r)}")
        if r.status_code != 202:
            raise CLIError(f"the upload of {audio} was refused ({r.status_code}): {detail_of(r)}")
        accepted = r.json()
        job_id, session_id = str(accepted["job_id"]), str(accepted["session_id"])
        err.print(f"session {session_id}, job {job_id}")
        _follow(api, job_id, "transcription")
        text = api.request(
            "GET", f"/api/v1/sessions/{session_id}/export", params={"format": format.value}
        ).text
    finally:
        api.close()
    _write(text, output, format)
    err.print(f"summarise it with: intrascribe summarize {session_id}")


def _write(text: str, output: Path | None, format: Format) -> None:  # noqa: A002
    if output:
        output.write_text(text, encoding="utf-8")
        err.print(f"wrote {output} ({format.value})")
    else:
        sys.stdout.write(text if text.endswith("\n") else text + "\n")
        sys.stdout.flush()


@app.command()
def export(
    session: Annotated[str, typer.Argument(help="The session's id (from `transcribe` or `sessions`).")],
    format: Annotated[Format, typer.Option("--format", "-f", help="Output format.")] = Format.txt,  # noqa: A002
    output: Annotated[
        Path | None,
        typer.Option("--output", "-o", help="Write here instead of to the terminal.", dir_okay=False),
    ] = None,
) -> None:
    """Write a session's current transcript again, in any format (md includes the latest summary)."""
    api = _api()
    try:
        r = api.request(
            "GET",
            f"/api/v1/sessions/{session}/export",
            params={"format": format.value},
            expect=(200, 404, 422),
        )
    finally:
        api.close()
    if r.status_code == 404:
        raise CLIError(f"session {session}: {detail_of(r)} (see `intrascribe sessions`)")
    if r.status_code == 422:
        raise CLIError(f"not a valid session id: {detail_of(r)}")
    _write(r.text, output, format)


@app.command()
def summarize(
    session: Annotated[str, typer.Argument(help="The session's id (from `transcribe` or `sessions`).")],
    template: Annotated[
        str | None, typer.Option(help="A summary template's id (default: yours, else the system's).")
    ] = None,
    language: Annotated[str | None, typer.Option(help="Write the summary in this language.")] = None,
) -> None:
    """Ask the server's LLM for a summary of a transcribed session and print it (Markdown)."""
    api = _api()
    try:
        body: dict[str, Any] = {}
        if template:
            body["template_id"] = template
        if language:
            body["language"] = language
        r = api.request(
            "POST", f"/api/v1/sessions/{session}/summary", json=body, expect=(202, 404, 409, 422, 429, 503)
        )
        if r.status_code == 404:
            raise CLIError(
                f"no session {session} (or template {template}) of yours: see `intrascribe sessions`"
            )
        if r.status_code == 422:
            raise CLIError(f"not a valid session id or option: {detail_of(r)}")
        if r.status_code != 202:
            raise CLIError(f"the summary was refused ({r.status_code}): {detail_of(r)}")
        _follow(api, str(r.json()["job_id"]), "summary")
        summary = api.request("GET", f"/api/v1/sessions/{session}/summary").json()
    finally:
        api.close()
    text = summary.get("summary") or ""
    if out.is_terminal:
        out.print(Markdown(text))
    else:
        sys.stdout.write(text if text.endswith("\n") else text + "\n")
        sys.stdout.flush()


@app.command()
def sessions(
    limit: Annotated[int, typer.Option(min=1, max=100, help="How many, newest first.")] = 20,
) -> None:
    """List your sessions, newest first."""
    api = _api()
    try:
        r = api.request("GET", "/api/v1/sessions/", params={"limit": limit})
    finally:
        api.close()
    table = Table("id", "title", "status", "language", "duration", "created")
    for s in r.json():
        duration = s.get("duration_seconds")
        table.add_row(
            s["id"],
            s.get("title") or "",
            s.get("status") or "",
            s.get("language") or "",
            f"{duration:.0f} s" if isinstance(duration, int | float) else "",
            (s.get("created_at") or "")[:19].replace("T", " "),
        )
    Console(width=max(out.width, 140) if not out.is_terminal else None).print(table)


@app.command()
def logout() -> None:
    """Forget the stored login (deletes the credentials file)."""
    path = credentials_path()
    if path.exists():
        path.unlink()
        err.print(f"removed {path}")
    else:
        err.print("not logged in")


def main() -> None:
    try:
        app(prog_name="intrascribe")
    except CLIError as e:
        err.print(f"[bold red]error:[/] {escape(str(e))}", highlight=False)
        sys.exit(e.code)
    except KeyboardInterrupt:
        err.print("interrupted")
        sys.exit(130)


if __name__ == "__main__":  # pragma: no cover
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    main()
