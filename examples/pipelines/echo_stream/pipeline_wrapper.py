"""Echo pipeline: a deterministic, LLM-free way to exercise /run and OpenAI-compatible streaming (SSE)."""

import re
import time
from collections.abc import Generator

# Import haystack.tools before hayhooks' helpers. haystack.tools and haystack.components.agents import each other;
# hayhooks deploys startup pipelines in parallel threads, a YAML pipeline's first load enters that cycle through
# haystack.tools while get_last_user_message's module enters it through agents, and the losing thread fails with
# "cannot import name 'ComponentTool'" (hayhooks 2.1.0, haystack-ai 3.4.1). Same entry point, no cross-thread cycle.
import haystack.tools  # noqa: F401
from hayhooks import BasePipelineWrapper, get_last_user_message
from haystack.dataclasses import StreamingChunk

# Pause between streamed words, so a client (or a buffering proxy in front of gunicorn) visibly
# receives the reply chunk by chunk. Only applied when the client asked for a stream: for a
# non-streaming request hayhooks drains a sync generator on the event loop, where sleeping would block.
WORD_PAUSE_SECONDS = 0.05


class PipelineWrapper(BasePipelineWrapper):
    def setup(self) -> None:
        """Nothing to build: this example has no Haystack components, only the wrapper's own logic."""
        self.pipeline = None

    def run_api(self, text: str) -> dict[str, str | int]:
        """
        Echo the text back with its length, to smoke-test a deployment without any model.

        Args:
            text: Any text to echo.

        Returns:
            The same text and its length in characters.
        """
        return {"echo": text, "length": len(text)}

    def run_chat_completion(
        self, model: str, messages: list[dict], body: dict
    ) -> Generator[StreamingChunk, None, None]:
        """Reply "Echo: <last user message>", yielded word by word; hayhooks streams each chunk as one SSE event."""
        message = get_last_user_message(messages)
        if isinstance(message, list):  # OpenAI content parts: [{"type": "text", "text": "..."}, ...]
            message = " ".join(part.get("text") or "" for part in message if isinstance(part, dict))
        reply = f"Echo: {message}" if isinstance(message, str) and message.strip() else "Echo: (empty message)"
        pause = WORD_PAUSE_SECONDS if body.get("stream") else 0.0
        return _stream_words(reply, pause)


def _stream_words(reply: str, pause: float) -> Generator[StreamingChunk, None, None]:
    """Yield each word with its trailing whitespace, so the joined chunks reproduce the reply exactly."""
    for index, word in enumerate(re.findall(r"\S+\s*", reply)):
        if index and pause:
            time.sleep(pause)
        yield StreamingChunk(content=word)
