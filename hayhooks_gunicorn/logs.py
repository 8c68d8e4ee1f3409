"""One log stream: gunicorn's, uvicorn's and hayhooks' (loguru) lines in one format, with the pid on every line.

hayhooks' ``create_app()`` re-routes the ``uvicorn*`` loggers into loguru
(``server/logger.py::intercept_stdlib_logging``), replacing the handlers uvicorn-worker took from gunicorn, and
loguru writes to stderr in its own format: the error log file, the access log switch and the format of gunicorn were
all bypassed. Here loguru's only sink hands every record to gunicorn's own loggers, so ``--error-logfile``,
``--access-logfile``/``accesslog`` (unset = no access lines), ``--log-level``, syslog and ``logconfig_dict`` apply
to all of them.
"""

from __future__ import annotations

import json
import logging
import re
import time
from datetime import datetime, timezone
from logging.handlers import SysLogHandler
from typing import Any

from gunicorn.glogging import Logger as GunicornLogger
from gunicorn.instrument.statsd import Statsd

try:  # where loguru keeps what contextualize() binds (the request id); without it, access lines go through loguru
    from loguru._logger import context as _loguru_context
except ImportError:  # pragma: no cover
    _loguru_context = None

ACCESS_TAG = "kit_access"
_ANSI = re.compile(r"\x1b\[[0-9;]*m")
_LEVELS = {"TRACE": logging.DEBUG, "SUCCESS": logging.INFO}


class TextFormatter(logging.Formatter):
    """gunicorn's own line format (``glogging.Logger.error_fmt``), plus loguru's bound extras (request id)."""

    def __init__(self) -> None:
        super().__init__(GunicornLogger.error_fmt, GunicornLogger.datefmt)
        self._stamp: tuple[int, str] = (-1, "")

    def stamp(self, created: float) -> str:
        """The date part, formatted once per second (``strftime`` is a visible share of a request's cost)."""
        second, text = self._stamp
        if int(created) != second:
            text = time.strftime(self.datefmt or "", self.converter(created))
            self._stamp = (int(created), text)
        return text

    def line(self, created: float, pid: int | None, level: str, message: str, extra: dict[str, Any] | None) -> str:
        line = f"{self.stamp(created)} [{pid}] [{level}] {message}"
        if extra:
            head, sep, tail = line.partition("\n")
            line = head + " | " + " ".join(f"{k}={v}" for k, v in extra.items()) + sep + tail
        return line

    def format(self, record: logging.LogRecord) -> str:
        line = self.line(
            record.created, record.process, record.levelname, record.getMessage(), getattr(record, "kit_extra", None)
        )
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            line += "\n" + record.exc_text
        if record.stack_info:
            line += "\n" + self.formatStack(record.stack_info)
        return line


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time (ISO 8601 and epoch), level, pid, logger, message, extras, exception."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, timezone.utc).isoformat(timespec="milliseconds"),
            "ts": round(record.created, 6),
            "level": record.levelname,
            "pid": record.process,
            "logger": "access" if record.name == "gunicorn.access" else "error",
            "message": record.getMessage(),
            **(getattr(record, "kit_extra", None) or {}),
        }
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


def formatter(kind: str) -> logging.Formatter:
    return JsonFormatter() if kind == "json" else TextFormatter()


class KitLogger(Statsd):
    """gunicorn's logger class with the kit's format on its handlers and loguru routed into it.

    Built on gunicorn's statsd logger: gunicorn swaps in ``Statsd`` only while ``logger_class`` is its default
    (``config.py::Config.logger_class``), so ``--statsd-host`` would be ignored otherwise. No host, nothing sent.
    """

    def __init__(self, cfg: Any) -> None:
        if cfg.statsd_host:
            super().__init__(cfg)  # type: ignore[no-untyped-call]  # gunicorn has no annotations
            return
        GunicornLogger.__init__(self, cfg)
        self.prefix, self.sock, self.dogstatsd_tags = "", None, cfg.dogstatsd_tags  # type: ignore[assignment]

    def setup(self, cfg: Any) -> None:
        super().setup(cfg)  # type: ignore[no-untyped-call]
        from hayhooks_gunicorn.settings import kit_settings

        if not (cfg.logconfig or cfg.logconfig_dict or cfg.logconfig_json):  # the user's own logging config wins
            fmt = formatter(kit_settings().log_format)
            for handler in [*self.error_log.handlers, *self.access_log.handlers]:
                if getattr(handler, "_gunicorn", False) and not isinstance(handler, SysLogHandler):
                    handler.setFormatter(fmt)
            # Neither format shows the process or thread name; looking them up cost ~1% of a worker's CPU per
            # request (LogRecord.__init__ asks multiprocessing.current_process() for every record).
            logging.logMultiprocessing = False
            logging.logThreads = False
        route_loguru(self)


def route_loguru(glogger: GunicornLogger) -> None:
    """Make gunicorn's loggers loguru's only sink (hayhooks adds a stderr sink when its logger module is imported)."""
    import hayhooks.server.logger  # noqa: F401  (its import-time setup must run before it is replaced)
    from loguru import logger

    def sink(message: Any) -> None:
        record = message.record
        extra = dict(record["extra"])
        target = glogger.access_log if extra.pop(ACCESS_TAG, False) else glogger.error_log
        if target is glogger.access_log and not glogger.access_log_enabled:
            return
        level = _LEVELS.get(record["level"].name, record["level"].no)
        if not target.isEnabledFor(level):
            return
        exc = record["exception"]
        text = _ANSI.sub("", record["message"])
        if not (exc and exc.type) and (plain := _plain_stream(target, level)) is not None:
            # The common case (text lines to stdout/stderr) skips building a LogRecord: same line, a fraction of
            # the cost, paid three times per request.
            stream, fmt = plain
            _write(
                stream,
                fmt.line(record["time"].timestamp(), record["process"].id, logging.getLevelName(level), text, extra),
            )
            return
        entry = target.makeRecord(
            target.name,
            level,
            record["file"].path,
            record["line"],
            text,
            (),
            (exc.type, exc.value, exc.traceback) if exc and exc.type else None,
            func=record["function"],
            extra={"kit_extra": extra},
        )
        entry.created = record["time"].timestamp()
        entry.msecs = (entry.created % 1) * 1000
        target.handle(entry)

    # Records no gunicorn logger would keep are dropped by loguru before they are formatted (access lines: INFO).
    level = glogger.error_log.getEffectiveLevel()
    if glogger.access_log_enabled:
        level = min(level, logging.INFO)
    logger.remove()
    logger.add(sink, level=level, format="{message}", catch=True)


def _plain_stream(target: logging.Logger, level: int) -> tuple[logging.StreamHandler[Any], TextFormatter] | None:
    """The only handler of *target* and its formatter, when it is a plain stream with the kit's text format."""
    handlers = target.handlers
    if len(handlers) != 1 or target.filters:
        return None
    handler = handlers[0]
    if type(handler) is not logging.StreamHandler or handler.filters or level < handler.level:
        return None
    return (handler, handler.formatter) if isinstance(handler.formatter, TextFormatter) else None


def _write(stream: logging.StreamHandler[Any], line: str) -> None:
    stream.acquire()
    try:
        stream.stream.write(line + stream.terminator)
        stream.stream.flush()
    finally:
        stream.release()


class AccessToGunicorn(logging.Handler):
    """``uvicorn.access`` -> gunicorn's access log, with hayhooks' request id on the line; hayhooks'
    ``HAYHOOKS_ACCESS_LOG_EXCLUDED_PATH_PREFIXES`` still applies."""

    def __init__(self, hayhooks_handler: logging.Handler | None, glogger: GunicornLogger) -> None:
        super().__init__()
        self.excluded = getattr(hayhooks_handler, "_is_excluded_access_log", None)
        self.glogger = glogger

    def emit(self, record: logging.LogRecord) -> None:
        from loguru import logger

        if not self.glogger.access_log_enabled or (self.excluded is not None and self.excluded(record)):
            return
        message = _ANSI.sub("", record.getMessage())
        plain = _plain_stream(self.glogger.access_log, logging.INFO)
        if plain is not None and _loguru_context is not None:
            # The common case, written directly: one access line per request is worth the shortcut past loguru.
            # hayhooks binds the request id with loguru's contextualize() (server/logger.py::RequestIdMiddleware).
            stream, fmt = plain
            _write(stream, fmt.line(record.created, record.process, "INFO", message, _loguru_context.get()))
            return
        logger.bind(**{ACCESS_TAG: True}).log(record.levelname, message)


def route_uvicorn_access(glogger: GunicornLogger) -> None:
    """In a worker, after hayhooks' ``create_app()`` pointed ``uvicorn.access`` at its loguru interceptor."""
    access = logging.getLogger("uvicorn.access")
    access.handlers = [AccessToGunicorn(access.handlers[0] if access.handlers else None, glogger)]
    access.setLevel(logging.INFO)
    access.propagate = False
