"""The ceiling: what one uvicorn worker gives for this traffic with nothing of ours in it.

The same routes, the same url-encoded forms parsed, the same kind of TwiML built with the
twilio library (menus as <Gather><Say>, an <Enqueue waitUrl>, the hold document), the same
uvicorn settings and log configuration as `ivr serve`; no signature check, no database, no
call tree. The load generator drives it with the same journeys: after `steps` menu answers
it queues the caller, as the hotline does.

    python -m bench.ceiling --port 8001 --steps 6
"""

from __future__ import annotations

import argparse

import uvicorn
from fastapi import FastAPI, Request, Response
from twilio.twiml.voice_response import Gather, VoiceResponse

from ivr.observe import log_config
from ivr.prompts import load_catalogs
from ivr.settings import PROJECT_ROOT

TWIML = "application/xml"
PUBLIC_URL = "https://hotline.bench.test"
HOLD_MUSIC = "http://com.twilio.sounds.music.s3.amazonaws.com/MARKOVICHAMP-Borghestral.mp3"


def create_app(steps: int, public_url: str = PUBLIC_URL) -> FastAPI:
    catalog = load_catalogs(PROJECT_ROOT / "prompts")
    # Real prompt text, so the documents are as long as the hotline's.
    menu_text = catalog.render("main_menu", "en").text or ""
    hold_text = catalog.render("hold_position", "en", position=3, minutes=12).text or ""
    tip_text = catalog.render("hold_tip_1", "en").text or ""
    offer_text = catalog.render("hold_callback_offer", "en").text or ""
    voice = "Polly.Joanna-Neural"
    app = FastAPI()

    def menu(step: int) -> Response:
        response = VoiceResponse()
        gather = Gather(
            action=f"{public_url}/twilio/gather?s={step}",
            method="POST",
            num_digits=1,
            finish_on_key="",
            timeout=6,
            action_on_empty_result=True,
            input="dtmf speech",
            language="en-US",
            hints="agent, representative",
            speech_timeout="auto",
        )
        gather.say(menu_text, voice=voice, language="en-US")
        response.append(gather)
        response.redirect(f"{public_url}/twilio/gather?s={step}", method="POST")
        return Response(str(response), media_type=TWIML)

    @app.post("/twilio/voice")
    async def answer(request: Request) -> Response:
        await request.form()
        return menu(1)

    @app.post("/twilio/gather")
    async def gather(request: Request, s: int = 0) -> Response:
        await request.form()
        if s < steps:
            return menu(s + 1)
        response = VoiceResponse()
        response.say(offer_text, voice=voice, language="en-US")
        response.enqueue(
            "security",
            action=f"{public_url}/twilio/queue-exit?s={s + 1}",
            method="POST",
            wait_url=f"{public_url}/twilio/wait?lang=en&queue=security",
            wait_url_method="POST",
        )
        return Response(str(response), media_type=TWIML)

    @app.post("/twilio/wait")
    async def wait(request: Request, lang: str = "en", queue: str = "") -> Response:
        await request.form()
        response = VoiceResponse()
        gather = Gather(
            action=f"{public_url}/twilio/callback-request?lang={lang}",
            method="POST",
            input="dtmf",
            num_digits=1,
            finish_on_key="",
            timeout=2,
        )
        for text in (hold_text, tip_text, offer_text):
            gather.say(text, voice=voice, language="en-US")
        response.append(gather)
        response.play(HOLD_MUSIC)
        return Response(str(response), media_type=TWIML)

    @app.post("/twilio/queue-exit")
    async def queue_exit(request: Request, s: int = 0) -> Response:
        await request.form()
        response = VoiceResponse()
        response.hangup()
        return Response(str(response), media_type=TWIML)

    @app.post("/twilio/status", status_code=204)
    async def status(request: Request) -> Response:
        await request.form()
        return Response(status_code=204)

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    return app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8001)
    parser.add_argument("--steps", type=int, default=6, help="menu answers before the queue")
    parser.add_argument("--public-url", default=PUBLIC_URL)
    args = parser.parse_args()
    uvicorn.run(
        create_app(args.steps, args.public_url),
        host=args.host,
        port=args.port,
        proxy_headers=True,
        forwarded_allow_ips="*",
        log_config=log_config("json"),
    )


if __name__ == "__main__":
    main()
