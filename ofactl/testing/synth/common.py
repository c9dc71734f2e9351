"""What every part of the synthetic corpus shares: constants, the plan's records, speakers and voices."""

from __future__ import annotations

import hashlib
import math
import string
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

#: Sample rate of every file written.
SAMPLE_RATE = 16000
#: Bumped when the same arguments would give different files.
FORMAT_VERSION = 1
#: Name of the completion marker in ``out_dir``.
DONE_FILE = ".done"

#: The ten SUPERB keyword-spotting classes.
KEYWORDS = ("yes", "no", "up", "down", "left", "right", "on", "off", "stop", "go")
#: The other twenty Speech Commands v0.01 words (SUPERB's ``_unknown_``).
AUXILIARY_WORDS = (
    "zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine",
    "bed", "bird", "cat", "dog", "happy", "house", "marvin", "sheila", "tree", "wow",
)  # fmt: skip

#: Layout root folders written under ``out_dir``, by key.
LAYOUT_ROOTS = {
    "librispeech": "LibriSpeech",
    "speech_commands": "speech_commands_v0.01",
    "speech_commands_test": "speech_commands_test_set_v0.01",
    "voxceleb1": "VoxCeleb1",
    "fluent_commands": "fluent_speech_commands_dataset",
    "quesst14": "quesst14Database",
    "snips": "SNIPS",
    "covost2": "CoVoST2",
}

#: The phone inventory of ``*.phones.txt``: espeak-ng's en-us phonemes in IPA
#: with stress marks removed (diphthongs, r-coloured vowels, ``əl`` and the
#: syllabic ``n̩`` are single phones, as espeak-ng treats them).
PHONES = tuple(
    sorted(
        """
        aɪ aɪə aɪɚ aʊ b d dʒ eɪ f h i iə iː j k l m n n̩ oʊ oː oːɹ p s t tʃ uː v w z
        æ ð ŋ ɐ ɑː ɑːɹ ɔ ɔɪ ɔː ɔːɹ ə əl ɚ ɛ ɛɹ ɜː ɡ ɪ ɪɹ ɹ ɾ ʃ ʊ ʊɹ ʌ ʒ ʔ θ ᵻ
        """.split()
    )
)

#: Words of the LibriSpeech and VoxCeleb sentences (common English words).
VOCABULARY = tuple(
    """
    the of and to in is it you that he was for on are with as his they be at one have this from or
    had by word but what some we can out other were all there when up use your how said an each she
    which do their time if will way about many then them write would like so these her long make
    thing see him two has look more day could go come did number sound no most people my over know
    water than call first who may down side been now find any new work part take get place made
    live where after back little only round man year came show every good me give our under name
    very through just form sentence great think say help low line turn cause much mean before move
    right boy old too same tell does set three want air well also play small end put home read hand
    port large spell add even land here must big high such follow act why ask men change went light
    kind off need house picture try us again animal point mother world near build self earth father
    head stand own page should country found answer school grow study still learn plant cover food
    sun four between state keep eye never last let thought city tree cross farm hard start might
    story saw far sea draw left late run while press close night real life few north open seem
    together next white children begin got walk example ease paper group always music those both
    mark often letter until mile river car feet care second book carry took science eat room friend
    began idea fish mountain stop once base hear horse cut sure watch color face wood main enough
    plain girl usual young ready above ever red list though feel talk bird soon body dog family
    direct leave song measure door product black short class wind question happen complete ship
    area half rock order fire south problem piece told knew pass since top whole king space heard
    best hour better true during hundred five remember step early hold west ground interest reach
    fast sing listen six table travel less morning ten simple several toward war lay against
    pattern slow center love person money serve appear road map rain rule pull cold notice voice
    unit power town fine certain fly fall lead cry dark machine note wait plan figure star box field
    rest correct able pound done beauty drive stood contain front teach week final gave green quick
    develop ocean warm free minute strong special mind behind clear tail produce fact street inch
    nothing course stay wheel full force blue object decide surface deep moon island foot system
    busy test record boat common gold possible plane dry wonder laugh thousand ago ran check game
    shape hot miss brought heat snow bring yes distant fill east paint language among
    """.split()
)

# espeak-ng voice variants used for speakers (all deterministic; en-us base voice so
# that every speaker has the same phone inventory).
_VARIANTS = (
    "m1", "m2", "m3", "m4", "m5", "m6", "m7", "f1", "f2", "f3", "f4", "f5",
    "klatt", "klatt2", "klatt3", "Andy", "Annie", "aunty", "belinda", "david",
    "linda", "max", "paul", "steph", "travis", "victor", "robert", "john",
)  # fmt: skip
_FEMALE = {"f1", "f2", "f3", "f4", "f5", "Annie", "aunty", "belinda", "linda", "steph"}

_ESPEAK_VOICE = "en-us"
_MIN_SPEAKERS = 3
_MAX_SPEAKERS = 200
_MAX_UTTERANCES = 100_000
_WORDS_PER_SENTENCE = (4, 14)
_SNR_DB = (30.0, 40.0)
_NOISE_FILES = ("white_noise", "pink_noise", "hum")
_NOISE_SECONDS = 15
# TensorFlow's speech_commands which_set() constants (also used by s3prl's KS reader).
_SC_MAX_PER_CLASS = 2**27 - 1
_SC_LISTS = {"dev": "validation_list.txt", "test": "testing_list.txt"}
_LS_SUBSETS = {"train": "train-clean-100", "dev": "dev-clean", "test": "test-clean"}
_FSC_SUBSETS = {"train": "train", "dev": "valid", "test": "test"}
_FSC_HEADER = ["", "path", "speakerId", "transcription", "action", "object", "location"]
_VOX_SPLIT = {"train": 1, "dev": 2, "test": 3}

# RNG streams (SeedSequence entropy words after the seed).
_STREAM_SPEAKERS, _STREAM_TEXT, _STREAM_IDS, _STREAM_JOB, _STREAM_NOISE = 1, 2, 3, 4, 5
_STREAM_QUESST = 14  # its own text/voice/jitter generators, so the other layouts do not change
_STREAM_SNIPS = 20  # likewise for Audio SNIPS
_STREAM_COVOST = 21  # and for CoVoST 2



# --------------------------------------------------------------------------- plan


@dataclass(frozen=True)
class _Voice:
    """One speaker's fixed voice."""

    variant: str
    pitch: int  # espeak -p, 0..99
    speed: int  # espeak -s, words per minute
    amplitude: int  # espeak -a
    word_gap: int  # espeak -g, units of 10 ms
    warp: float  # resampling factor: >1 raises formants and pitch
    tilt: float  # first-order FIR y[n] = x[n] - tilt * x[n-1]
    eq_hz: float  # peaking filter centre
    eq_db: float
    eq_q: float
    level_db: float  # peak level of the written audio, dBFS

    @property
    def sex(self) -> str:
        return "F" if self.variant in _FEMALE else "M"

    @property
    def name(self) -> str:
        return f"espeak-ng {_ESPEAK_VOICE}+{self.variant} p{self.pitch} s{self.speed}"


@dataclass(frozen=True)
class _Speaker:
    index: int
    role: str  # train / dev / test
    voice: _Voice
    ls_id: int
    ls_chapter: int
    sc_hash: str
    vox_id: str
    fsc_id: str


@dataclass(frozen=True)
class _Job:
    """One audio file to speak (or, with ``noise``, to generate)."""

    index: int
    layout: str  # key of LAYOUT_ROOTS, or "background_noise"
    relpath: str  # below out_dir
    text: str
    voice: _Voice | None
    pitch: int = 0
    speed: int = 0
    fixed_samples: int | None = None  # pad/crop to exactly this many samples
    noise: str | None = None  # white / pink / hum: no speech
    noise_rms_db: float = -30.0
    seconds: float = 0.0  # length of a noise file


@dataclass
class _Plan:
    speakers: list[_Speaker]
    jobs: list[_Job] = field(default_factory=list)
    # metadata rows, filled while planning; written after synthesis
    ls_utts: list[tuple[_Speaker, str, int, str]] = field(default_factory=list)  # spk, utt-id, job, text
    sc_lists: dict[str, list[str]] = field(default_factory=lambda: {"dev": [], "test": []})
    vox_rows: list[tuple[int, str]] = field(default_factory=list)
    fsc_rows: dict[str, list[tuple[str, str, str, str, str, str]]] = field(
        default_factory=lambda: {"train": [], "dev": [], "test": []}
    )
    # QUESST 2014: documents (id, job, words, term or None, index of its first word) and queries by set
    quesst_docs: list[tuple[str, int, list[str], str | None, int]] = field(default_factory=list)
    quesst_queries: dict[str, list[tuple[str, str]]] = field(default_factory=lambda: {"dev": [], "eval": []})
    # Audio SNIPS: (utterance id, split folder, words, slot tag per word, intent)
    snips_rows: list[tuple[str, str, list[str], list[str], str]] = field(default_factory=list)
    # CoVoST 2: (split, clip name, English sentence, German translation, client id)
    covost_rows: list[tuple[str, str, str, str, str]] = field(default_factory=list)

    def add(self, layout: str, relpath: str, text: str, voice: _Voice | None, rng, **kw) -> int:
        if voice is not None and "pitch" not in kw:
            kw["pitch"] = int(np.clip(voice.pitch + rng.integers(-5, 6), 0, 99))
            kw["speed"] = int(voice.speed + rng.integers(-10, 11))
        job = _Job(index=len(self.jobs), layout=layout, relpath=relpath, text=text, voice=voice, **kw)
        self.jobs.append(job)
        return job.index


@dataclass(frozen=True)
class _Sizes:
    """Optional sizes of the held-out sets (None: the defaults of the module docstring)."""

    held_out_speakers: int | None = None  # speakers for dev and for test, each
    dev_utterances: int | None = None  # at least this many dev utterances per layout (LS, SC, VoxCeleb1, FSC)
    test_utterances: int | None = None  # at least this many test utterances per layout

    def per_speaker(self, role: str, speakers: int) -> int | None:
        """Utterances each of ``speakers`` held-out speakers of ``role`` says so that the split reaches its size."""
        total = {"dev": self.dev_utterances, "test": self.test_utterances}.get(role)
        return None if total is None else max(1, math.ceil(total / max(speakers, 1)))


def _rng(seed: int, *stream: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([seed, *stream]))


def _roles(n: int, rng: np.random.Generator, held: int | None = None) -> list[str]:
    n_held = held if held is not None else max(1, round(n / 10))
    roles = ["dev"] * n_held + ["test"] * n_held + ["train"] * (n - 2 * n_held)
    return [roles[i] for i in rng.permutation(n)]


def _sc_which_set(hash8: str) -> str:
    """TensorFlow's ``which_set`` for a Speech Commands speaker hash: train / dev / test."""
    digest = hashlib.sha1(hash8.encode("utf-8")).hexdigest()
    percent = (int(digest, 16) % (_SC_MAX_PER_CLASS + 1)) * (100.0 / _SC_MAX_PER_CLASS)
    return "dev" if percent < 10 else "test" if percent < 20 else "train"


def _draw_voice(rng: np.random.Generator, variant: str) -> _Voice:
    return _Voice(
        variant=variant,
        pitch=int(rng.integers(20, 81)),
        speed=int(rng.integers(145, 196)),
        amplitude=int(rng.integers(80, 121)),
        word_gap=int(rng.integers(0, 4)),
        warp=round(float(rng.uniform(0.9, 1.1)), 3),
        tilt=round(float(rng.uniform(-0.5, 0.6)), 3),
        eq_hz=round(float(np.exp(rng.uniform(np.log(400.0), np.log(3500.0)))), 1),
        eq_db=round(float(rng.uniform(-6.0, 8.0)), 2),
        eq_q=round(float(rng.uniform(0.7, 2.0)), 2),
        level_db=round(float(rng.uniform(-9.0, -2.0)), 2),
    )


def _make_speakers(n: int, seed: int, held: int | None = None) -> list[_Speaker]:
    rng = _rng(seed, _STREAM_SPEAKERS)
    ids = _rng(seed, _STREAM_IDS)
    variants = [_VARIANTS[i] for i in rng.permutation(len(_VARIANTS))]
    roles = _roles(n, rng, held)
    ls_ids = sorted(int(i) for i in ids.choice(np.arange(14, 9000), size=n, replace=False))
    chapters = ids.choice(np.arange(1000, 300000), size=n, replace=False)
    alnum = string.ascii_letters + string.digits
    speakers, hashes = [], set()
    for k in range(n):
        voice = _draw_voice(rng, variants[k % len(variants)])
        while True:  # a hash whose which_set() bucket is this speaker's role
            hash8 = "".join(ids.choice(list("0123456789abcdef"), size=8))
            if hash8 not in hashes and _sc_which_set(hash8) == roles[k]:
                hashes.add(hash8)
                break
        speakers.append(
            _Speaker(
                index=k,
                role=roles[k],
                voice=voice,
                ls_id=ls_ids[k],
                ls_chapter=int(chapters[k]),
                sc_hash=hash8,
                vox_id=f"id{10001 + k}",
                fsc_id="".join(ids.choice(list(alnum), size=16)),
            )
        )
    return speakers


def _write_text(path: Path, lines: list[str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
