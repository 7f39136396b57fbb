"""`edge-sentry voice render|play`: render the spoken prompts ahead of time; play one to listen.

`render [--language en|zh|all] [--force]` writes every prompt of the language (default: the
voice's, `voice.language` or the display's) into the cache under `device.state_dir`, skipping those
already there unless `--force`, and prunes files of old texts or volumes; one line per prompt.
The installer runs it, so the first visitor does not wait for the first start's rendering.
`play PROMPT` plays one prompt through the configured output, rendering it first if needed: the
technician's "can I hear it" check (`selftest --only voice` plays only silence).

Exit codes: 0 done, 1 a prompt could not be rendered or played (the message says what to install
or fix), 2 bad usage.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from ..config import Config
from ..errors import VoiceError
from ..voice import Prompt, Voice
from ..voice.prompts import TEXTS


def register(sub: Any) -> None:
    parser = sub.add_parser(
        "voice",
        help="render the spoken prompts (at install), or play one",
        description="The gate's spoken prompts: render them into the state folder's cache with "
        "espeak-ng, or play one through the configured output.",
    )
    commands = parser.add_subparsers(dest="voice_command", metavar="ACTION")
    commands.required = True
    render = commands.add_parser("render", help="render the prompts of a language (cached)")
    render.add_argument(
        "--language", choices=[*TEXTS, "all"], help="default: voice.language, else the display's"
    )
    render.add_argument("--force", action="store_true", help="render again even where cached")
    render.set_defaults(func=handle_render)
    play = commands.add_parser("play", help="play one prompt through voice.output")
    play.add_argument("prompt", choices=[p.value for p in Prompt], metavar="PROMPT",
                      help="one of: " + ", ".join(p.value for p in Prompt))  # fmt: skip
    play.set_defaults(func=handle_play)


def handle_render(args: argparse.Namespace, config: Config) -> int:
    voice = Voice(config)
    languages = list(TEXTS) if args.language == "all" else [args.language or voice.language]
    try:
        for language in languages:
            for done in voice.cache.render_all(language, force=args.force):
                state = "rendered" if done.made else "cached"
                print(f"{language}  {done.prompt.value:<14} {state:<8} {done.seconds:4.1f} s  {done.path}")
    except VoiceError as exc:
        print(f"edge-sentry voice: {exc}", file=sys.stderr)
        return 1
    for path in voice.cache.prune():
        print(f"removed {path} (an old text or volume)")
    return 0


def handle_play(args: argparse.Namespace, config: Config) -> int:
    voice = Voice(config)
    prompt = Prompt(args.prompt)
    try:
        if voice.renders:
            voice.cache.render(voice.language, prompt)
    except VoiceError as exc:
        print(f"edge-sentry voice: {exc}", file=sys.stderr)
        return 1
    if not voice.player.play_now(prompt):
        print("edge-sentry voice: the prompt did not play (see the log line above)", file=sys.stderr)
        return 1
    where = config.voice.device if voice.output == "aplay" else "the simulated output (nothing audible)"
    print(f"played {voice.language}/{prompt.value} on {where}")
    return 0
