"""The two HTML pages a person (or a browser test) sees: consent and authorize error."""

from html import escape

from dashtam.sandbox.oauth import AuthorizeRequest

TITLE = "Schwab Sandbox — Authorize Dashtam"

_STYLE = (
    "body{font-family:system-ui,sans-serif;max-width:32rem;margin:4rem auto;padding:0 1rem}"
    "button{font-size:1rem;padding:.5rem 1.5rem;margin-right:.5rem}"
)


def _page(title: str, body: str) -> str:
    return (
        f'<!doctype html><html lang="en"><head><meta charset="utf-8"><title>{escape(title)}</title>'
        f"<style>{_STYLE}</style></head><body>{body}</body></html>"
    )


def consent_page(request: AuthorizeRequest) -> str:
    hidden = "".join(
        f'<input type="hidden" name="{escape(name)}" value="{escape(value)}">'
        for name, value in request.as_params().items()
    )
    return _page(
        TITLE,
        f"<h1>{escape(TITLE)}</h1>"
        "<p>Dashtam asks to read your sandbox accounts, positions and transactions.</p>"
        f'<form method="post" action="/v1/oauth/authorize">{hidden}'
        '<button id="approve" type="submit" name="action" value="approve">Allow</button>'
        '<button id="deny" type="submit" name="action" value="deny">Deny</button>'
        "</form>",
    )


def error_page(message: str) -> str:
    return _page(
        "Schwab Sandbox — Authorization error",
        f"<h1>Authorization error</h1><p>{escape(message)}</p>",
    )
