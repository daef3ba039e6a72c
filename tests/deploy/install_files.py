"""Readers for the install files (Dockerfile, docker-compose.yml) shared by the tests here."""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[2]


@dataclass
class Stage:
    """One `FROM ... AS name` stage of a Dockerfile, its instructions in order."""

    name: str
    base: str
    instructions: list[tuple[str, str]] = field(default_factory=list)

    def values(self, keyword: str) -> list[str]:
        return [argument for instruction, argument in self.instructions if instruction == keyword]

    def env(self) -> dict[str, str]:
        """ENV KEY=VALUE pairs set in this stage (one or many per instruction)."""
        pairs = {}
        for argument in self.values("ENV"):
            for token in shlex.split(argument):
                name, _, value = token.partition("=")
                pairs[name] = value
        return pairs


def dockerfile_lines(path: Path) -> list[str]:
    """Logical lines: comments dropped, backslash continuations joined."""
    lines, current = [], ""
    for raw in path.read_text().splitlines():
        stripped = raw.strip()
        if stripped.startswith("#") or not stripped:
            continue
        if stripped.endswith("\\"):
            current += stripped[:-1] + " "
            continue
        lines.append(current + stripped)
        current = ""
    return lines


def dockerfile_stages(path: Path = REPO / "Dockerfile") -> tuple[dict[str, str], dict[str, Stage]]:
    """(global ARG defaults, stages by name)."""
    global_args: dict[str, str] = {}
    stages: dict[str, Stage] = {}
    stage = None
    for line in dockerfile_lines(path):
        instruction, _, argument = line.partition(" ")
        instruction = instruction.upper()
        if instruction == "FROM":
            match = re.fullmatch(r"(?:--platform=\S+\s+)?(\S+)(?:\s+AS\s+(\S+))?", argument.strip(), re.IGNORECASE)
            assert match, f"cannot read FROM {argument}"
            stage = Stage(name=match.group(2) or f"stage{len(stages)}", base=match.group(1))
            stages[stage.name] = stage
        elif stage is None and instruction == "ARG":
            name, _, value = argument.partition("=")
            global_args[name.strip()] = value.strip()
        else:
            assert stage is not None, f"{instruction} before the first FROM"
            stage.instructions.append((instruction, argument.strip()))
    return global_args, stages


def stage_chain(stages: dict[str, Stage], name: str) -> list[Stage]:
    """The stage and the stages it is built FROM, nearest first."""
    chain = [stages[name]]
    while chain[-1].base in stages:
        chain.append(stages[chain[-1].base])
    return chain


def compose_file(name: str = "docker-compose.yml") -> dict:
    return yaml.safe_load((REPO / name).read_text())


def with_defaults(value: str) -> str:
    """What compose makes of "${VAR:-default}" when VAR is unset: the default."""
    return re.sub(r"\$\{\w+:-([^}]*)\}", r"\1", str(value))
