"""A durable pipeline of two 1.5 s steps with a checkpoint between them (served with HAYHOOKS_DURABLE_MODE=true).

A worker that dies after the checkpoint leaves the doubled value in Redis; the worker that takes the execution
over resumes with it and runs only the second step.
"""

import asyncio

from hayhooks import BasePipelineWrapper
from hayhooks.durable import DurableContext
from haystack import Pipeline
from pydantic import BaseModel


class Request(BaseModel):
    value: int


class Result(BaseModel):
    value: int


class PipelineWrapper(BasePipelineWrapper):
    # Every execution is pinned to this revision: change it whenever a change would break a resumed execution.
    durable_revision = "1"

    def setup(self) -> None:
        self.pipeline = Pipeline()  # hayhooks' durable adapter needs a Haystack Pipeline, even an empty one

    async def run_durable_async(self, context: DurableContext, request: Request) -> Result:
        if "doubled" not in context.state:
            await asyncio.sleep(1.5)
            context.state["doubled"] = request.value * 2
            await context.checkpoint()
        await asyncio.sleep(1.5)
        return Result(value=int(context.state["doubled"]) + 1)
