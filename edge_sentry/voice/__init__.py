"""The gate's voice: a short spoken prompt per outcome, rendered once, played beside the hot loop.

`prompts` (which prompt an event calls for, and its texts), `render` (espeak-ng into a cache of WAV
files), `player` (the hand-over, the player thread, the aplay and simulated sinks), `announcer`
(`Voice`, built from `[voice]`). Nothing here is ever waited for by the gate.
"""

from __future__ import annotations

from .announcer import Voice, display_language, voice_language
from .prompts import Prompt, prompt_for

__all__ = ["Prompt", "Voice", "display_language", "prompt_for", "voice_language"]
