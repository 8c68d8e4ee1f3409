"""hayhooks' Chainlit UI for the whole server: one chat host process, every worker forwarding to it.

Chainlit keeps each socket.io session in the process that opened it (engine.io polling sessions and the
``WebsocketSession`` objects live in memory), and gunicorn workers share one listening socket, so a UI mounted in
every worker breaks as soon as a session's requests reach two of them. The master therefore starts one host process
(``host``: hayhooks' own ``mount_chainlit_app`` on a private unix socket, supervised by ``supervisor``), and every
worker mounts a forwarder at ``HAYHOOKS_CHAINLIT_PATH`` and ``/public`` (``forward``) instead of its own Chainlit.
The host calls back into the server over HTTP (``/v1/models``, ``/v1/chat/completions``), as hayhooks' UI always
does, so it loads no pipeline and outlives worker reloads and rolls.
"""
