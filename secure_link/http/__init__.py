"""The HTTP surface around the routes: middleware, who is asking and from where, the OpenAPI
document, and the built web client.

- `middleware`: the access log, CORS in the error shape, security headers;
- `proxy`: client addresses and origins, trusting proxy headers only from TRUSTED_PROXIES;
- `openapi`: the document at /api/openapi.json; `webclient`: the client's page and assets.
"""

from secure_link.http import openapi, webclient
from secure_link.http.middleware import AccessLog, JsonCORSMiddleware, SecurityHeaders
from secure_link.http.proxy import client_address, is_secure, origin_allowed, own_origin

__all__ = ["AccessLog", "JsonCORSMiddleware", "SecurityHeaders", "client_address", "is_secure", "openapi",
           "origin_allowed", "own_origin", "webclient"]
