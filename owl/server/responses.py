"""The base of every typed response body: fields an API leaves out unless they were given.

An API's JSON has fields that are absent, not null, in some of its messages (a chunk's
`usage`, a delta's `content`); a response model names those in `omit_unset`, and they are
written only when the route gave them, even as null.
"""

from __future__ import annotations

from typing import Any, ClassVar

from pydantic import BaseModel, SerializerFunctionWrapHandler, model_serializer


class ResponseBody(BaseModel):
    omit_unset: ClassVar[frozenset[str]] = frozenset()

    @model_serializer(mode="wrap")
    def _written(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        data = handler(self)
        for name in self.omit_unset - self.model_fields_set:
            data.pop(name, None)
        return data

    def body(self) -> dict[str, Any]:
        """The JSON object, as a route returns it."""
        return self.model_dump()
