"""The plan of the LibriSpeech, Speech Commands, VoxCeleb1 and Fluent Speech Commands files (then QUESST 2014, Audio SNIPS and CoVoST 2)."""

from __future__ import annotations

import math
import string

import numpy as np

from ofactl.testing.synth.common import (
    _LS_SUBSETS,
    _NOISE_FILES,
    _NOISE_SECONDS,
    _SC_LISTS,
    _STREAM_IDS,
    _STREAM_JOB,
    _STREAM_TEXT,
    _VOX_SPLIT,
    _WORDS_PER_SENTENCE,
    AUXILIARY_WORDS,
    KEYWORDS,
    LAYOUT_ROOTS,
    SAMPLE_RATE,
    VOCABULARY,
    _make_speakers,
    _Plan,
    _rng,
    _Sizes,
)
from ofactl.testing.synth.covost import _plan_covost
from ofactl.testing.synth.quesst import _plan_quesst14
from ofactl.testing.synth.snips import _plan_snips


def _sentence(rng: np.random.Generator) -> str:
    n = int(rng.integers(_WORDS_PER_SENTENCE[0], _WORDS_PER_SENTENCE[1] + 1))
    return " ".join(VOCABULARY[i] for i in rng.integers(0, len(VOCABULARY), size=n))


def _video_id(rng: np.random.Generator) -> str:
    first = string.ascii_letters + string.digits
    rest = first + "-_"
    return rng.choice(list(first)) + "".join(rng.choice(list(rest), size=10))


def _fsc_uuid(rng: np.random.Generator) -> str:
    hexd = list("0123456789abcdef")

    def h(n: int) -> str:
        return "".join(rng.choice(hexd, size=n))

    return f"{h(8)}-{h(4)}-11e9-{rng.choice(list('89ab'))}{h(3)}-{h(12)}"


def _fsc_intents() -> list[tuple[str, str, str, tuple[str, ...]]]:
    """The 31 Fluent Speech Commands intents with a few phrasings each."""
    intents = []
    for loc in ("none", "kitchen", "bedroom", "washroom"):
        if loc == "none":
            phrasings = {
                ("activate", "lights"): ("Turn on the lights", "Switch on the lights", "Lights on"),
                ("deactivate", "lights"): ("Turn off the lights", "Switch off the lights", "Lights off"),
                ("increase", "heat"): ("Turn up the heat", "Increase the heating", "Heat up"),
                ("decrease", "heat"): ("Turn down the heat", "Decrease the heating", "Heat down"),
            }
        else:
            cap = loc.capitalize()
            phrasings = {
                ("activate", "lights"): (
                    f"Turn on the lights in the {loc}",
                    f"Switch on the {loc} lights",
                    f"{cap} lights on",
                ),
                ("deactivate", "lights"): (
                    f"Turn off the lights in the {loc}",
                    f"Switch off the {loc} lights",
                    f"{cap} lights off",
                ),
                ("increase", "heat"): (
                    f"Turn up the heat in the {loc}",
                    f"Increase the heating in the {loc}",
                    f"{cap} heat up",
                ),
                ("decrease", "heat"): (
                    f"Turn down the heat in the {loc}",
                    f"Decrease the heating in the {loc}",
                    f"{cap} heat down",
                ),
            }
        intents += [(a, o, loc, p) for (a, o), p in phrasings.items()]
    intents += [
        ("activate", "music", "none", ("Play the music", "Put on some music", "Start the music")),
        ("deactivate", "music", "none", ("Stop the music", "Pause the music", "Turn off the music")),
        ("increase", "volume", "none", ("Turn up the volume", "Increase the volume", "Volume up")),
        ("decrease", "volume", "none", ("Turn down the volume", "Decrease the volume", "Volume down")),
        ("activate", "lamp", "none", ("Turn on the lamp", "Switch on the lamp", "Lamp on")),
        ("deactivate", "lamp", "none", ("Turn off the lamp", "Switch off the lamp", "Lamp off")),
    ]
    for thing in ("newspaper", "juice", "socks", "shoes"):
        intents.append(("bring", thing, "none", (f"Bring me the {thing}", f"Get me my {thing}", f"Fetch the {thing}")))
    for lang in ("Chinese", "Korean", "English", "German"):
        intents.append(
            (
                "change language",
                lang,
                "none",
                (f"Switch the language to {lang}", f"Change the language to {lang}", f"Set the language to {lang}"),
            )
        )
    intents.append(("change language", "none", "none", ("Change language", "Switch language", "Language settings")))
    return intents


def _plan(n_speakers: int, utterances: int, seed: int, sizes: _Sizes = _Sizes()) -> _Plan:
    """Every file to write, drawn from ``seed`` (no audio work)."""
    speakers = _make_speakers(n_speakers, seed, sizes.held_out_speakers)
    n_role = {role: sum(s.role == role for s in speakers) for role in ("train", "dev", "test")}
    plan = _Plan(speakers)
    text = _rng(seed, _STREAM_TEXT)
    ids = _rng(seed, _STREAM_IDS, 1)
    jitter = _rng(seed, _STREAM_JOB)
    per_speaker = utterances / n_speakers

    # LibriSpeech
    ls = LAYOUT_ROOTS["librispeech"]
    for spk in speakers:
        n = utterances // n_speakers + (1 if spk.index < utterances % n_speakers else 0)
        n = sizes.per_speaker(spk.role, n_role[spk.role]) or n
        folder = f"{ls}/{_LS_SUBSETS[spk.role]}/{spk.ls_id}/{spk.ls_chapter}"
        for u in range(n):
            utt = f"{spk.ls_id}-{spk.ls_chapter}-{u:04d}"
            sentence = _sentence(text)
            job = plan.add("librispeech", f"{folder}/{utt}.flac", sentence, spk.voice, jitter)
            plan.ls_utts.append((spk, utt, job, sentence))

    # Speech Commands v0.01 (every speaker) and its separate test set (test speakers)
    sc, sct = LAYOUT_ROOTS["speech_commands"], LAYOUT_ROOTS["speech_commands_test"]
    reps = max(1, round(utterances / (25 * n_speakers)))
    words_per_speaker = len(KEYWORDS) + 4
    for spk in speakers:
        aux = [AUXILIARY_WORDS[i] for i in sorted(text.choice(len(AUXILIARY_WORDS), size=4, replace=False))]
        spk_reps = reps
        if spk.role == "dev" and sizes.dev_utterances is not None:
            spk_reps = math.ceil(sizes.dev_utterances / (words_per_speaker * n_role["dev"]))
        for word in (*KEYWORDS, *aux):
            for r in range(spk_reps):
                rel = f"{word}/{spk.sc_hash}_nohash_{r}.wav"
                plan.add("speech_commands", f"{sc}/{rel}", word, spk.voice, jitter, fixed_samples=SAMPLE_RATE)
                if spk.role in _SC_LISTS:
                    plan.sc_lists[spk.role].append(rel)
    for i, kind in enumerate(_NOISE_FILES):
        plan.add(
            "background_noise",
            f"{sc}/_background_noise_/{kind}.wav",
            "",
            None,
            jitter,
            noise=kind,
            noise_rms_db=(-24.0, -26.0, -30.0)[i],
            seconds=float(_NOISE_SECONDS),
        )
    test_reps = 1
    if sizes.test_utterances is not None:  # per test speaker: the keywords, two unknown words and two silences, x reps
        test_reps = math.ceil(sizes.test_utterances / ((len(KEYWORDS) + 4) * n_role["test"]))
    for spk in (s for s in speakers if s.role == "test"):
        for word in KEYWORDS:
            for r in range(test_reps):
                rel = f"{sct}/{word}/{spk.sc_hash}_nohash_{r}.wav"
                plan.add("speech_commands_test", rel, word, spk.voice, jitter, fixed_samples=SAMPLE_RATE)
        n_unknown = 2 * test_reps
        picks = sorted(text.choice(len(AUXILIARY_WORDS), size=min(n_unknown, len(AUXILIARY_WORDS)), replace=False))
        for r in range(n_unknown):
            word = AUXILIARY_WORDS[picks[r % len(picks)]]
            rel = f"{sct}/_unknown_/{word}_{spk.sc_hash}_nohash_{r}.wav.wav"
            plan.add("speech_commands_test", rel, word, spk.voice, jitter, fixed_samples=SAMPLE_RATE)
        for _ in range(2 * test_reps):
            hash8 = "".join(ids.choice(list("0123456789abcdef"), size=8))
            plan.add(
                "speech_commands_test",
                f"{sct}/_silence_/{hash8}_nohash_0.wav",
                "",
                None,
                jitter,
                noise=str(jitter.choice(list(_NOISE_FILES))),
                noise_rms_db=float(jitter.uniform(-55.0, -30.0)),
                seconds=1.0,
            )

    # VoxCeleb1 identification
    vox = LAYOUT_ROOTS["voxceleb1"]
    n_vox = max(3, round(per_speaker / 4))
    n_vox_dev = sizes.per_speaker("dev", n_speakers) or 1  # closed-set: every speaker in every split
    n_vox_test = sizes.per_speaker("test", n_speakers) or 1
    for spk in speakers:
        splits = ["dev"] * n_vox_dev + ["test"] * n_vox_test + ["train"] * (n_vox - 2)
        videos = {"dev": _video_id(ids), "test": _video_id(ids)}
        counters: dict[str, int] = {}
        for j, split in enumerate(splits):
            if split == "train":
                t = (j - n_vox_dev - n_vox_test) // 4
                video = videos.setdefault(f"train{t}", _video_id(ids))
            else:
                video = videos[split]
            counters[video] = counters.get(video, 0) + 1
            rel = f"{spk.vox_id}/{video}/{counters[video]:05d}.wav"
            plan.add("voxceleb1", f"{vox}/wav/{rel}", _sentence(text), spk.voice, jitter)
            plan.vox_rows.append((_VOX_SPLIT[split], rel))

    # Fluent Speech Commands
    fsc = LAYOUT_ROOTS["fluent_commands"]
    n_fsc = max(2, round(per_speaker / 3))
    intents = _fsc_intents()
    order = [intents[i] for i in text.permutation(len(intents))]
    seen: dict[str, set[str]] = {"action": set(), "object": set(), "location": set()}
    train_i = 0
    for role in ("train", "dev", "test"):  # train first: valid/test use slot values seen in train
        for spk in (s for s in speakers if s.role == role):
            for _ in range(sizes.per_speaker(role, n_role[role]) or n_fsc):
                if role == "train":
                    action, obj, loc, phrasings = order[train_i % len(order)]
                    train_i += 1
                    seen["action"].add(action)
                    seen["object"].add(obj)
                    seen["location"].add(loc)
                else:
                    allowed = [
                        it
                        for it in intents
                        if it[0] in seen["action"] and it[1] in seen["object"] and it[2] in seen["location"]
                    ]
                    action, obj, loc, phrasings = allowed[int(text.integers(0, len(allowed)))]
                phrase = phrasings[int(text.integers(0, len(phrasings)))]
                rel = f"wavs/speakers/{spk.fsc_id}/{_fsc_uuid(ids)}.wav"
                plan.add("fluent_commands", f"{fsc}/{rel}", phrase, spk.voice, jitter)
                plan.fsc_rows[role].append((rel, spk.fsc_id, phrase, action, obj, loc))

    _plan_quesst14(plan, speakers, utterances, seed)
    _plan_snips(plan, speakers, utterances, seed)
    _plan_covost(plan, speakers, utterances, seed, sizes)
    return plan
