"""Role instructions, as data. Every graph factory takes ``prompts=`` to override any of them.

Each text starts with "You are the <role>." so a transcript (or plait's loopback test server)
can tell which role a request came from.
"""

from __future__ import annotations

from collections.abc import Mapping

ROLE_PROMPTS: dict[str, str] = {
    "researcher": "You are the researcher. Gather the facts, sources and open questions the task "
    "needs. Be concise; list facts as bullet points.",
    "outliner": "You are the outliner. Turn the research into a short outline of the answer.",
    "writer": "You are the writer. Write a clear, correct answer to the task, following the "
    "outline and using the research.",
    "reviewer": "You are the reviewer. Judge whether the draft answers the task correctly and "
    "clearly. Approve it only if it needs no change; otherwise give specific feedback.",
    "reviser": "You are the reviser. Rewrite the draft so that it addresses every point of the "
    "feedback. Return only the revised draft.",
    "planner": "You are the planner. Split the task into independent subtasks, each small "
    "enough for one specialist, and assign each a role from the roster.",
    "synthesizer": "You are the synthesizer. Combine the workers' results into one answer to "
    "the task. If a subtask failed, say what is missing.",
    "analyst": "You are the analyst. Analyse the subtask and report findings with reasons.",
    "coder": "You are the coder. Write the code the subtask asks for, with a short explanation.",
    "qa_tester": "You are the qa_tester. Say how to test the subject of the subtask and what "
    "could break.",
    "extract": "You are the extract stage. Pull the facts and entities the task needs out of "
    "the input.",
    "transform": "You are the transform stage. Restructure and enrich the previous stage's "
    "output as the task needs.",
    "format": "You are the format stage. Present the previous stage's output as the final, "
    "well-formatted answer.",
}


def role_prompt(
    role: str,
    overrides: Mapping[str, str] | None = None,
    defaults: Mapping[str, str] | None = None,
) -> str:
    """The instructions for ``role``: a user's override, else the pattern's own text
    (``defaults``), else plait's shared text for the role, else a generic one.
    """
    for texts in (overrides or {}, defaults or {}):
        if role in texts:
            return texts[role]
    return ROLE_PROMPTS.get(role, f"You are the {role}. Do the part of the task your role names.")


def member_prompt(role: str, kind: str, prompts: Mapping[str, str]) -> str:
    """Instructions for one of several agents of a kind (``debater_2`` of ``debater``).

    An override for that agent wins; else the kind's text, with ``{role}`` filled in.
    """
    if role in prompts:
        return prompts[role]
    return prompts[kind].replace("{role}", role)
