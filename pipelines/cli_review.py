"""`headshot review`: the review queue in a browser."""

from __future__ import annotations

from typing import Optional

import typer

from pipelines.cli_app import _fail, _workspace, app


@app.command()
def review(
    host: str = typer.Option("127.0.0.1", help="Interface to listen on. Anything but loopback needs an access token."),
    port: int = typer.Option(8765, help="Port (0 = any free port)."),
    token: Optional[str] = typer.Option(None, envvar="HEADSHOT_REVIEW_TOKEN",
                                        help="Access token every request must carry, 16 or more letters, digits or ._~- "
                                             "(made up for you with --host)."),
    learner: bool = typer.Option(True, "--learner/--no-learner", help="Train the active learner as labels arrive."),
) -> None:
    """Label doubtful crops by keyboard in a browser; decisions go to review.sqlite in the workspace.

    Keys: arrows move, Shift+arrows select, a/r/s accept/reject/skip, g selects a duplicate
    group, k keeps its keeper, 1-9 toggle your tags, u undoes, Enter confirms the learner's
    proposals, ? shows them all.

    Example: headshot review --port 8765   (then open http://127.0.0.1:8765/)
    """
    from curation.review.items import NothingToReview
    from curation.review.server import ReviewServer, ReviewServerError, is_loopback, new_token
    from curation.review.store import StoreUnavailable

    ws = _workspace(create=False)
    if not is_loopback(host) and not token:
        token = new_token()
    try:
        server = ReviewServer(ws, host=host, port=port, token=token, learner=learner)
    except StoreUnavailable as exc:
        _fail(str(exc), 4 if exc.disk_full else 2)
    except (NothingToReview, ReviewServerError) as exc:
        _fail(str(exc))
    counts = server.queue.counts()
    typer.echo(f"{counts['left']} doubtful crops to review ({counts['total']} crops, {counts['decided']} decided) "
               f"in {ws.home}")
    def announce(url: str) -> None:
        typer.echo(f"review queue: {url}  (Ctrl-C stops it)")
        for other in server.other_urls():  # --host 0.0.0.0: where the other machines go
            typer.echo(f"  from another machine: {other}")

    try:
        server.serve_forever(announce=announce)
    except ReviewServerError as exc:
        _fail(str(exc))
    except KeyboardInterrupt:
        pass
    typer.echo(f"stopped; decisions are in {ws.review_db} (headshot dataset build NAME turns them into a dataset)")
