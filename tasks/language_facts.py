"""Long-range language facts: a fact stated early, distractor text, then a question that needs the fact.

"John grew up in France . [many sentences] What does John speak ?" -> French. A small synthetic English,
generated (never downloaded), with templates after bAbI (Weston et al. 2015, arXiv:1502.05698): QA1 (single
supporting fact) and QA2 (two supporting facts). Every sentence is six tokens, every question five:

    fact       mary went to the kitchen .  |  john grew up in france .  |  mary picked up the apple .
    distractor facts about other people (including their moves), and filler: the weather was cold today .
    question   where is mary now ?  ->  kitchen      what does john speak ?  ->  french
               where is the apple ?  ->  the place its holder went last (two supporting facts)

With one supporting fact the question asks, at random per sequence, where the person is (the fact may
overwrite an earlier move: "mary went to the garden . ... mary moved to the kitchen .") or which language
they speak (from the country they grew up in). With two, the person picks up an object and later moves;
the question asks where the object is. Worked example, one supporting fact, distance 6 (`.` ignored):

    tokens   john went to the garden . | mary grew up in spain . | the sky was grey today . | what does mary speak ?
    target   .                                                                                          spanish
    mask     0 ... 0                                                                                    1

Knobs: `length` = distance in tokens from the end of the (last) supporting fact to the question (rounded up
to whole sentences); `distractors` = how many other people the distractor sentences talk about;
`supporting_facts` = 1 or 2. Metric: answer accuracy. Chance: 1 / number of candidate answers
(places or languages), averaged over the question types in use.
"""

from __future__ import annotations

import math
from typing import ClassVar, Literal

import torch

from seqbench.errors import OptionsError
from seqbench.tasks.base import Batch, ClassificationTask, answer_at_end

PEOPLE = ("mary", "john", "sandra", "daniel", "julie", "fred", "bill", "emma")
PLACES = ("kitchen", "garden", "office", "hallway", "bathroom", "bedroom")
COUNTRIES = ("france", "spain", "germany", "italy", "japan", "china")
LANGUAGES = ("french", "spanish", "german", "italian", "japanese", "chinese")  # spoken in COUNTRIES[i]
OBJECTS = ("apple", "football", "milk", "book", "key")
ADJECTIVES = ("nice", "cold", "warm", "grey", "windy")
FUNCTION = (
    "went",
    "moved",
    "to",
    "the",
    "grew",
    "up",
    "in",
    "picked",
    "weather",
    "was",
    "today",
    ".",
    "where",
    "is",
    "now",
    "?",
    "what",
    "does",
    "speak",
)
VOCAB = FUNCTION + PEOPLE + PLACES + COUNTRIES + LANGUAGES + OBJECTS + ADJECTIVES
ID = {w: i for i, w in enumerate(VOCAB)}
SENTENCE, QUESTION = 6, 5


def _ids(words: tuple[str, ...]) -> torch.Tensor:
    return torch.tensor([ID[w] for w in words])


class LanguageFacts(ClassificationTask):
    input_kind = "tokens"
    presets: ClassVar[dict[str, dict]] = {
        "quick": {"steps": 3000, "batch_size": 32, "eval_every": 200, "eval_size": 256},
        "paper": {"steps": 30_000, "batch_size": 32, "eval_every": 1000, "eval_size": 1000},
    }

    def __init__(
        self,
        distance: int = 60,
        distractors: int = 3,
        supporting_facts: Literal[1, 2] = 1,
        eval_lengths: tuple[int, ...] | None = None,
    ) -> None:
        if distance < 0:
            raise OptionsError(f"language_facts: distance must be >= 0, got {distance}.")
        if not 1 <= distractors <= len(PEOPLE) - 1:
            raise OptionsError(
                f"language_facts: distractors must be in 1..{len(PEOPLE) - 1} (other people), got {distractors}."
            )
        self.distractors, self.supporting_facts = distractors, supporting_facts
        self.input_size = self.output_size = len(VOCAB)
        self.train_lengths = (distance, distance)
        self.eval_lengths = tuple(
            sorted(set(eval_lengths or (distance, 2 * distance + 6, 4 * distance + 6)) | {distance})
        )

    # -- pieces --------------------------------------------------------------------------------------------
    @staticmethod
    def _fill(template: tuple[str, ...], slot: int, words: torch.Tensor) -> torch.Tensor:
        """(B, len) sentences from a template whose word at `slot` is replaced by the token ids `words`."""
        out = _ids(template).to(words.device).expand(words.shape[0], -1).clone()
        out[:, slot] = words
        return out

    def _pick_other(self, target: torch.Tensor, pool: int, offset: int, g: torch.Generator) -> torch.Tensor:
        """Token ids of a uniformly chosen member of a word group other than `target` (group index)."""
        r = torch.randint(0, pool - 1, target.shape, generator=g, device=target.device)
        return offset + r + (r >= target).long()

    def _distractor(
        self, people: torch.Tensor, keep_object: torch.Tensor, g: torch.Generator
    ) -> torch.Tensor:
        """(B, 6) distractor sentences about one of the other `people` (B, D) or the weather. They never
        mention the target's whereabouts and never pick up the queried object."""
        B, dev = people.shape[0], people.device
        who = people.gather(1, torch.randint(0, people.shape[1], (B, 1), generator=g, device=dev)).squeeze(1)
        place = ID[PLACES[0]] + torch.randint(0, len(PLACES), (B,), generator=g, device=dev)
        country = ID[COUNTRIES[0]] + torch.randint(0, len(COUNTRIES), (B,), generator=g, device=dev)
        any_obj = ID[OBJECTS[0]] + torch.randint(0, len(OBJECTS), (B,), generator=g, device=dev)
        obj = torch.where(
            keep_object < 0,
            any_obj,
            self._pick_other(keep_object.clamp(min=0), len(OBJECTS), ID[OBJECTS[0]], g),
        )
        adjective = ID[ADJECTIVES[0]] + torch.randint(0, len(ADJECTIVES), (B,), generator=g, device=dev)
        moved = self._fill(("mary", "went", "to", "the", "kitchen", "."), 4, place)
        moved[:, 0] = who
        origin = self._fill(("mary", "grew", "up", "in", "france", "."), 4, country)
        origin[:, 0] = who
        picked = self._fill(("mary", "picked", "up", "the", "apple", "."), 4, obj)
        picked[:, 0] = who
        weather = self._fill(("the", "weather", "was", "nice", "today", "."), 3, adjective)
        options = torch.stack([moved, origin, picked, weather], dim=1)  # (B, 4, 6)
        kind = torch.randint(0, 4, (B,), generator=g, device=dev)
        return options[torch.arange(B, device=dev), kind]

    # -- the task --------------------------------------------------------------------------------------------
    def sample(self, batch_size: int, length: int, generator: torch.Generator) -> Batch:
        g, dev, B = generator, generator.device, batch_size
        rows = torch.arange(B, device=dev)
        person = torch.randint(0, len(PEOPLE), (B,), generator=g, device=dev)
        # D distinct other people per row: a random permutation of the others, first D.
        keys = torch.rand(B, len(PEOPLE), generator=g, device=dev)
        keys[rows, person] = 2.0  # sorts last: never a distractor
        others = ID[PEOPLE[0]] + keys.argsort(dim=1)[:, : self.distractors]
        who = ID[PEOPLE[0]] + person
        place = torch.randint(0, len(PLACES), (B,), generator=g, device=dev)
        obj = torch.randint(0, len(OBJECTS), (B,), generator=g, device=dev)
        no_object = torch.full_like(obj, -1)  # 1-fact stories: distractors may pick up anything

        def sentence(template: tuple[str, ...], slot: int, words: torch.Tensor) -> torch.Tensor:
            s = self._fill(template, slot, words)
            s[:, 0] = who
            return s

        earlier_place = self._pick_other(place, len(PLACES), ID[PLACES[0]], g)
        overwritten = sentence(("mary", "went", "to", "the", "kitchen", "."), 4, earlier_place)
        keep = obj if self.supporting_facts == 2 else no_object
        lead = (
            torch.rand(B, generator=g, device=dev) < 0.5
        )  # half the stories first send the person elsewhere
        first = torch.where(lead.unsqueeze(1), overwritten, self._distractor(others, keep, g))
        moved = sentence(("mary", "moved", "to", "the", "kitchen", "."), 4, ID[PLACES[0]] + place)
        if self.supporting_facts == 1:
            country = torch.randint(0, len(COUNTRIES), (B,), generator=g, device=dev)
            origin = sentence(("mary", "grew", "up", "in", "france", "."), 4, ID[COUNTRIES[0]] + country)
            ask_language = torch.rand(B, generator=g, device=dev) < 0.5
            facts = [torch.where(ask_language.unsqueeze(1), origin, moved)]
            q_where = self._fill(("where", "is", "mary", "now", "?"), 2, who)
            q_lang = self._fill(("what", "does", "mary", "speak", "?"), 2, who)
            question = torch.where(ask_language.unsqueeze(1), q_lang, q_where)
            answer = torch.where(ask_language, ID[LANGUAGES[0]] + country, ID[PLACES[0]] + place)
        else:
            picked = sentence(("mary", "picked", "up", "the", "apple", "."), 4, ID[OBJECTS[0]] + obj)
            facts = [picked, self._distractor(others, keep, g), moved]
            question = self._fill(("where", "is", "the", "apple", "?"), 3, ID[OBJECTS[0]] + obj)
            answer = ID[PLACES[0]] + place
        after = [self._distractor(others, keep, g) for _ in range(math.ceil(length / SENTENCE))]
        return answer_at_end(torch.cat([first, *facts, *after, question], dim=1), answer)  # (B, T)

    def chance(self, length: int) -> dict[str, float]:
        if self.supporting_facts == 1:  # half the questions over places, half over languages
            return {"accuracy": 0.5 / len(PLACES) + 0.5 / len(LANGUAGES)}
        return {"accuracy": 1 / len(PLACES)}
