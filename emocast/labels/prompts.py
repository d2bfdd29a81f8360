"""Emotive text descriptions for training videos.

A built-in offline template bank (:func:`sample_prompts`) writes scene descriptions in the style of the paper
and the official README ("The portrait is watching a horror movie with jump scares.") for each MEAD emotion and
intensity 1..3, reproducibly for a seed. :class:`LLMPrompter` optionally asks a user-provided command or an
OpenAI-compatible chat endpoint instead (the paper used ChatGPT, following MMHead).
"""
from __future__ import annotations

import json
import os
import random
import shlex
import subprocess
import urllib.error
import urllib.request
import zlib

from ..errors import ConfigError, InputError
from .emotions import normalize_emotion, normalize_intensity

# Scenes per emotion and intensity (1 weak .. 3 strong): what the speaker is living through.
SCENES: dict[str, dict[int, tuple[str, ...]]] = {
    "angry": {
        1: ("being kept waiting on hold for far too long", "finding the office coffee machine broken again",
            "hearing a neighbour's loud music late at night", "being interrupted in the middle of a sentence",
            "discovering a parking ticket on the windshield"),
        2: ("arguing with a customer service agent who keeps repeating the same script",
            "finding out a colleague took credit for their work", "being cut off by a reckless driver",
            "learning that a package was lost for the third time", "complaining about an unfair bill"),
        3: ("confronting someone who lied to them for years", "shouting at a referee after a blatantly unfair call",
            "discovering that their car was vandalised", "reacting to a betrayal by a close friend",
            "defending a family member who was insulted"),
    },
    "contempt": {
        1: ("listening to a boastful stranger at a party", "reading a poorly written report from a rival",
            "hearing an obviously recycled excuse", "watching someone cut in line",
            "hearing a tasteless joke at dinner"),
        2: ("dismissing an arrogant critic's shallow review", "listening to a hypocritical speech",
            "watching a show-off fail at their own game", "reviewing a lazy copy of their own idea",
            "talking about a snobbish acquaintance"),
        3: ("sneering at a corrupt official's empty promises", "scoffing at a cheater who bragged about winning",
            "looking down on a bully who finally got caught", "mocking an opponent's ridiculous lie",
            "rolling their eyes at a pompous rival's apology"),
    },
    "disgusted": {
        1: ("smelling milk that has just turned sour", "noticing a hair in their soup",
            "stepping on something sticky on the floor", "tasting an overly bitter medicine",
            "seeing a messy, unwashed kitchen"),
        2: ("opening a fridge full of rotten food", "watching someone chew loudly with their mouth open",
            "finding mould on a slice of bread they just bit", "cleaning a clogged, smelly drain",
            "hearing about an unethical scandal"),
        3: ("smelling an overflowing garbage dump in the summer heat", "discovering maggots in the trash bin",
            "watching a gross-out scene in a movie", "finding a cockroach in their meal",
            "stepping barefoot into something slimy and foul"),
    },
    "fear": {
        1: ("hearing an unexplained creak in a dark house", "waiting nervously for exam results",
            "walking alone down an empty street at night", "feeling turbulence on a flight",
            "hearing footsteps behind them in a parking garage"),
        2: ("getting lost in a dense forest as night falls", "being stuck in an elevator between floors",
            "reading a message from an unknown number that knows their name", "hearing a burglar alarm at home",
            "driving on an icy mountain road"),
        3: ("watching a horror movie with jump scares", "being chased in a dark alley",
            "standing at the edge of a crumbling cliff", "waking up to the smell of smoke in the house",
            "facing a growling dog that is about to attack"),
    },
    "happy": {
        1: ("chatting with an old friend over coffee", "enjoying a sunny afternoon in the park",
            "receiving a kind message from a colleague", "listening to a favourite song on the radio",
            "tasting a delicious homemade meal"),
        2: ("celebrating a friend's birthday with a surprise party", "hearing that they got the job they wanted",
            "playing with a playful puppy", "sharing good news with their family",
            "watching a comedy show with friends"),
        3: ("winning a long-awaited championship", "reuniting with family after years apart",
            "hearing that they won the lottery", "celebrating their wedding day",
            "laughing uncontrollably at a hilarious joke"),
    },
    "neutral": {
        1: ("reading the evening news aloud", "giving directions to a passer-by",
            "explaining a recipe step by step", "presenting a weekly work report",
            "describing the weather forecast", "introducing themselves at a meeting",
            "reading a passage from a textbook", "answering questions in a calm interview",
            "talking about their daily routine", "summarising a documentary they watched",
            "explaining how to assemble a bookshelf", "describing the route to the train station",
            "reading out a shopping list", "taking notes during a lecture", "discussing the agenda of a meeting",
            "recording a voicemail message", "explaining the rules of a board game",
            "describing a painting in a museum", "reporting the results of a survey",
            "reading the terms of a contract"),
    },
    "sad": {
        1: ("looking at old photographs of a summer that has passed", "saying goodbye to a colleague who is leaving",
            "missing a friend who moved far away", "learning that a favourite café has closed",
            "listening to a melancholic song on a rainy day"),
        2: ("experiencing chronic illness or pain", "hearing that a beloved pet is ill",
            "reading a letter from a lost love", "failing an important exam after months of study",
            "moving out of their childhood home"),
        3: ("mourning the loss of a close family member", "standing at a funeral in the rain",
            "hearing devastating news on the phone", "saying a final goodbye to a dying friend",
            "grieving after a painful breakup"),
    },
    "surprised": {
        1: ("noticing an unexpected message from an old classmate", "finding a forgotten banknote in a coat pocket",
            "seeing snow fall in spring", "learning a little-known fun fact",
            "meeting a neighbour in an unusual place"),
        2: ("walking into an unannounced surprise party", "receiving a gift they never expected",
            "seeing a magician's trick they cannot explain", "hearing that a friend is getting married",
            "watching an unexpected plot twist in a film"),
        3: ("being told they won a prize they never entered for", "seeing a long-lost friend appear at the door",
            "watching fireworks suddenly explode right in front of them",
            "finding out a celebrity is standing next to them", "witnessing a shocking last-second goal"),
    },
}

# How the emotion reads at each intensity: adjectives for "talking with <adj> <noun>" frames.
_NOUN = {"angry": "anger", "contempt": "contempt", "disgusted": "disgust", "fear": "fear", "happy": "happiness",
         "neutral": "neutral emotion", "sad": "sadness", "surprised": "surprise"}
_DEGREE = {1: ("slight", "mild", "subtle"), 2: ("clear", "noticeable", "evident"),
           3: ("intense", "strong", "overwhelming")}
_ADJ = {"angry": "angry", "contempt": "contemptuous", "disgusted": "disgusted", "fear": "frightened",
        "happy": "happy", "neutral": "calm", "sad": "sad", "surprised": "surprised"}
_ADVERB = {1: "a little", 2: "visibly", 3: "extremely"}

# Sentence frames around a scene.
_FRAMES = (
    "The portrait is {scene}.",
    "A person is talking while {scene}.",
    "The speaker is {scene}.",
    "The portrait is talking about {scene}.",
)
_STATE_FRAMES = (
    "A person is talking with {degree} {noun}.",
    "The portrait looks {adverb} {adj} while speaking.",
)


def _items(emotion: str, intensity: int | None) -> list[tuple[str, str]]:
    """``(group, description)`` pairs; descriptions of one scene share a group."""
    emo = normalize_emotion(emotion)
    levels = [normalize_intensity(intensity, emo)] if intensity is not None else [1, 2, 3]
    out = {}
    for lvl in levels:
        lvl = 1 if emo == "neutral" else lvl
        for scene in SCENES[emo][lvl]:
            for f in _FRAMES:
                out[f.format(scene=scene)] = scene
        if emo == "neutral":
            out["A person is talking with neutral emotion."] = "state"
            out["The portrait is speaking calmly with a relaxed face."] = "state"
            continue
        for degree in _DEGREE[lvl]:
            out[_STATE_FRAMES[0].format(degree=degree, noun=_NOUN[emo])] = f"state{lvl}"
        out[_STATE_FRAMES[1].format(adverb=_ADVERB[lvl], adj=_ADJ[emo])] = f"state{lvl}"
    return sorted((g, t) for t, g in out.items())


def bank(emotion: str, intensity: int | None = None) -> list[str]:
    """Every description the template bank can produce for ``emotion`` (and ``intensity``; None = all levels),
    sorted and de-duplicated."""
    return sorted(t for _, t in _items(emotion, intensity))


def stable_seed(*parts) -> int:
    """A seed from strings/ints that is the same in every process (unlike ``hash``)."""
    return zlib.crc32("\x1f".join(str(p) for p in parts).encode("utf-8"))


def sample_prompts(emotion: str, intensity: int | None = None, n: int = 1, seed: int | str = 0) -> list[str]:
    """``n`` distinct descriptions for ``(emotion, intensity)``, the same for the same seed.

    Different scenes are preferred (two prompts of one video describe two situations while the bank allows it).
    ``seed`` may be an int or a string (e.g. ``f"{global_seed}:{video_id}"``); at most the bank's size is returned.
    """
    items = _items(emotion, intensity)
    rng = random.Random(seed if isinstance(seed, int) else stable_seed(seed))
    rng.shuffle(items)
    chosen, groups = [], set()
    for g, t in items:
        if len(chosen) < n and g not in groups:
            chosen.append(t)
            groups.add(g)
    for g, t in items:
        if len(chosen) < n and t not in chosen:
            chosen.append(t)
    return chosen


# ---------------------------------------------------------------------------------------------------------------
# optional LLM hook
# ---------------------------------------------------------------------------------------------------------------

DEFAULT_INSTRUCTION = (
    "Write {n} different one-sentence scene descriptions that would make a person feel {emotion} "
    "(intensity {intensity} of 3) while talking to the camera. Each must start with 'The portrait is' "
    "and be under 20 words. Return one description per line, nothing else.")


class LLMPrompter:
    """Descriptions from a user-provided LLM.

    - ``command``: a shell-style command template run without a shell, e.g.
      ``"my_llm --emotion {emotion} --intensity {intensity} --n {n}"`` (those three placeholders are replaced);
      it prints one description per line.
    - ``endpoint``: an OpenAI-compatible base URL (``http://localhost:8000/v1``); ``POST {endpoint}/chat/completions``
      with ``model`` and the instruction, API key from the environment variable ``api_key_env`` (if set).

    Lines are cleaned (numbering, bullets, quotes removed) and de-duplicated. On failure an
    :class:`~emocast.errors.InputError` is raised; callers may fall back to the template bank.
    """

    def __init__(self, command: str | None = None, endpoint: str | None = None, model: str = "gpt-4o-mini",
                 api_key_env: str | None = "OPENAI_API_KEY", instruction: str = DEFAULT_INSTRUCTION,
                 timeout: float = 60.0, temperature: float = 0.9):
        if bool(command) == bool(endpoint):
            raise ConfigError("LLM prompts: set exactly one of prompts.llm_command or prompts.llm_endpoint")
        self.command, self.endpoint, self.model = command, endpoint, model
        self.api_key_env, self.instruction, self.timeout, self.temperature = api_key_env, instruction, timeout, temperature

    def generate(self, emotion: str, intensity: int | None, n: int) -> list[str]:
        emo = normalize_emotion(emotion)
        lvl = intensity if intensity is not None else 2
        text = self._run_command(emo, lvl, n) if self.command else self._call_endpoint(emo, lvl, n)
        lines = _clean_lines(text)
        if not lines:
            raise InputError(f"the LLM returned no descriptions for {emo} (intensity {lvl}); check "
                             f"{'the command' if self.command else self.endpoint}")
        return lines[:n]

    def _run_command(self, emotion: str, intensity: int, n: int) -> str:
        values = {"{emotion}": emotion, "{intensity}": str(intensity), "{n}": str(n)}
        args = []
        for a in shlex.split(self.command):  # plain placeholder replacement: other braces stay as they are
            for k, v in values.items():
                a = a.replace(k, v)
            args.append(a)
        try:
            res = subprocess.run(args, capture_output=True, text=True, timeout=self.timeout)
        except (OSError, subprocess.TimeoutExpired) as err:
            raise InputError(f"LLM command {args[0]!r} failed to run ({err}); check prompts.llm_command") from None
        if res.returncode != 0:
            raise InputError(f"LLM command {args[0]!r} exited with {res.returncode}: {res.stderr.strip()[:300]}")
        return res.stdout

    def _call_endpoint(self, emotion: str, intensity: int, n: int) -> str:
        url = self.endpoint.rstrip("/") + "/chat/completions"
        body = {"model": self.model, "temperature": self.temperature,
                "messages": [{"role": "user",
                              "content": self.instruction.format(emotion=emotion, intensity=intensity, n=n)}]}
        headers = {"Content-Type": "application/json"}
        key = os.environ.get(self.api_key_env) if self.api_key_env else None
        if key:
            headers["Authorization"] = f"Bearer {key}"
        req = urllib.request.Request(url, data=json.dumps(body).encode("utf-8"), headers=headers, method="POST")
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as resp:
                data = json.loads(resp.read().decode("utf-8"))
            return data["choices"][0]["message"]["content"]
        except (urllib.error.URLError, OSError, ValueError, KeyError, IndexError, TypeError) as err:
            raise InputError(f"LLM endpoint {url} failed ({err}); check prompts.llm_endpoint and the API key "
                             f"variable {self.api_key_env}") from None


def _clean_lines(text: str) -> list[str]:
    out, seen = [], set()
    for line in text.splitlines():
        s = line.strip().lstrip("-*•").strip()
        while s[:1].isdigit():
            s = s[1:]
        s = s.lstrip(".):").strip().strip('"').strip("'").strip()
        if s and s.lower() not in seen:
            seen.add(s.lower())
            out.append(s)
    return out


def make_prompts(emotion: str | None, intensity: int | None, n: int, seed: int | str,
                 llm: LLMPrompter | None = None, fallback: bool = True) -> list[str]:
    """Descriptions for one video: from ``llm`` when given (falling back to the bank on failure if ``fallback``),
    else from the template bank. An unknown emotion gives no prompts."""
    if emotion is None or n <= 0:
        return []
    if llm is not None:
        try:
            return llm.generate(emotion, intensity, n)
        except InputError:
            if not fallback:
                raise
    return sample_prompts(emotion, intensity, n, seed)
