"""OpenAI's Responses API (/v1/responses): protocol, routes, stored responses."""
