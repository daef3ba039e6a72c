"""The Ollama Modelfile of a GGUF export: FROM the GGUF, a TEMPLATE that renders exactly the chat
template the model was trained with, its stop tokens and its default system prompt.

Ollama templates are Go templates and training templates are Jinja, and no library translates one
into the other. What can be translated is a template that renders a conversation as a sequence of
turns, each `prefix(role) + content + suffix(role)`, followed by a generation prompt (ChatML, as
SmolLM2, Qwen and our default use, and most small models' templates). `turn_format` finds those
pieces by rendering marker conversations through the tokenizer's own template, then checks that
they reproduce the template on a set of conversations; a template they do not reproduce gets no
Modelfile (the card says why) rather than one that prompts the model differently from training.

A default system prompt (SmolLM2's template adds one when the conversation has none) becomes the
Modelfile's SYSTEM: Ollama puts it first as a system message when a request has none, so both
render the same text.
"""

from __future__ import annotations

from dataclasses import dataclass

from tinyforge.ml.formatting import render

MODELFILE = "Modelfile"
ROLES = ("system", "user", "assistant")
_MARK = {"system": "SYSTEM-MARK-7f3a", "user": "USER-MARK-7f3a", "assistant": "ASSISTANT-MARK-7f3a"}

# Conversations the derived format must render exactly as the template does.
CHECK_CONVERSATIONS = (
    [{"role": "user", "content": "Hi"}],
    [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}],
    [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello!"},
     {"role": "user", "content": "How are you?\nTell me."}],
    [{"role": "system", "content": "S"}, {"role": "user", "content": "a"}, {"role": "assistant", "content": "b"},
     {"role": "user", "content": "c"}, {"role": "assistant", "content": "d"}, {"role": "user", "content": "e"}],
)


@dataclass(frozen=True)
class TurnFormat:
    prefix: dict[str, str]
    suffix: dict[str, str]
    generation_prompt: str
    default_system: str | None  # added by the template when a conversation has no system message

    def render(self, messages: list[dict[str, str]]) -> str:
        """What the Modelfile's TEMPLATE renders, with Ollama's SYSTEM rule, in Python."""
        if self.default_system is not None and (not messages or messages[0]["role"] != "system"):
            messages = [{"role": "system", "content": self.default_system}, *messages]
        text = "".join(self.prefix[m["role"]] + m["content"] + self.suffix[m["role"]] for m in messages)
        return text + self.generation_prompt

    def go_template(self) -> str:
        """The same, as an Ollama (Go text/template) TEMPLATE. No trim markers ({{- -}}): they would
        also eat the newlines that are part of the turns."""
        branches = "".join(
            f'{{{{ {"if" if i == 0 else "else if"} eq .Role "{role}" }}}}{self.prefix[role]}{{{{ .Content }}}}{self.suffix[role]}'
            for i, role in enumerate(ROLES))
        return f"{{{{ range .Messages }}}}{branches}{{{{ end }}}}{{{{ end }}}}{self.generation_prompt}"


def _between(text: str, start: str | None, end: str | None) -> str:
    begin = text.index(start) + len(start) if start else 0
    return text[begin:text.index(end, begin)] if end else text[begin:]


def turn_format(tokenizer) -> TurnFormat | None:
    """The template's turns, or None when it is not a sequence of turns we can reproduce."""
    try:
        s, u, a = (_MARK[r] for r in ROLES)
        u2, a2 = u + "-2", a + "-2"
        full = render(tokenizer, [{"role": "system", "content": s}, {"role": "user", "content": u},
                                  {"role": "assistant", "content": a}, {"role": "user", "content": u2},
                                  {"role": "assistant", "content": a2}])
        ends_with_user = render(tokenizer, [{"role": "system", "content": s}, {"role": "user", "content": u}])
        prompt = render(tokenizer, [{"role": "system", "content": s}, {"role": "user", "content": u}],
                        add_generation_prompt=True)
        assistant_suffix = _between(full, a2, None)
        user_suffix = _between(ends_with_user, u, None)
        system_prefix = full[:full.index(s)]
        user_prefix = _between(full, a, u2).removeprefix(assistant_suffix)
        if not _between(full, a, u2).startswith(assistant_suffix):
            return None
        system_suffix = _between(full, s, u)
        if not system_suffix.endswith(user_prefix):
            return None
        system_suffix = system_suffix[:len(system_suffix) - len(user_prefix)]
        between_user_and_assistant = _between(full, u, a)
        if not between_user_and_assistant.startswith(user_suffix):
            return None
        assistant_prefix = between_user_and_assistant[len(user_suffix):]
        if not prompt.startswith(ends_with_user):
            return None
        generation_prompt = prompt[len(ends_with_user):]

        prefix = {"system": system_prefix, "user": user_prefix, "assistant": assistant_prefix}
        suffix = {"system": system_suffix, "user": user_suffix, "assistant": assistant_suffix}
        alone = render(tokenizer, [{"role": "user", "content": u}], add_generation_prompt=True)
        own = prefix["user"] + u + suffix["user"] + generation_prompt
        default_system = None
        if alone != own:
            block = alone[:-len(own)] if alone.endswith(own) else ""
            if not (block.startswith(system_prefix) and block.endswith(system_suffix)):
                return None
            default_system = block[len(system_prefix):len(block) - len(system_suffix)]
        found = TurnFormat(prefix, suffix, generation_prompt, default_system)
    except (ValueError, TypeError, KeyError, IndexError):
        return None  # a marker did not come out where a turn template puts it
    except Exception as exc:  # the template itself refused a conversation (jinja's raise_exception)
        if type(exc).__name__ not in ("TemplateError", "TemplateSyntaxError", "UndefinedError"):
            raise
        return None
    pieces = [*prefix.values(), *suffix.values(), generation_prompt, default_system or ""]
    # Go template actions and the Modelfile's """ quotes cannot appear as literal text.
    if any("{{" in piece or "}}" in piece or '"""' in piece for piece in pieces):
        return None
    for messages in CHECK_CONVERSATIONS:
        if found.render(messages) != render(tokenizer, messages, add_generation_prompt=True):
            return None
    return found


def stop_strings(tokenizer, eos_ids: list[int]) -> list[str]:
    return [tokenizer.convert_ids_to_tokens(i) for i in eos_ids if tokenizer.convert_ids_to_tokens(i)]


def modelfile(gguf_name: str, fmt: TurnFormat, stops: list[str], adapter: str | None = None) -> str:
    lines = [f"FROM ./{gguf_name}", *([f"ADAPTER ./{adapter}"] if adapter else []), "",
             f'TEMPLATE """{fmt.go_template()}"""', ""]
    if fmt.default_system is not None:
        lines += [f'SYSTEM """{fmt.default_system}"""', ""]
    lines += [f'PARAMETER stop "{stop}"' for stop in stops]
    return "\n".join(lines) + "\n"
