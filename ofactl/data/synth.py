"""A synthetic English speech corpus in the public dataset layouts.

ofactl's tests, examples and demo recipe cannot download LibriSpeech or the
SUPERB datasets, so :func:`synthesize_corpus` speaks them with espeak-ng
(a command-line program, called without a shell) and writes them exactly as
the public releases are laid out, so the same readers (ours, torchaudio's,
s3prl's) accept the real and the synthetic data::

    OUT_DIR/
      LibriSpeech/{train-clean-100,dev-clean,test-clean}/<spk>/<chapter>/
          <spk>-<chapter>-<NNNN>.flac
          <spk>-<chapter>.trans.txt       "<utt-id> UPPERCASE WORDS"
          <spk>-<chapter>.phones.txt      "<utt-id> p h o n e s" (our extension)
      LibriSpeech/SPEAKERS.TXT
      speech_commands_v0.01/<word>/<hash8>_nohash_<n>.wav      (1 s, 16000 samples)
      speech_commands_v0.01/{validation_list,testing_list}.txt
      speech_commands_v0.01/_background_noise_/{white_noise,pink_noise,hum}.wav
      speech_commands_test_set_v0.01/<keyword>/<hash8>_nohash_<n>.wav
      speech_commands_test_set_v0.01/_unknown_/<word>_<hash8>_nohash_<n>.wav.wav
      speech_commands_test_set_v0.01/_silence_/<hash8>_nohash_<n>.wav
      VoxCeleb1/wav/id1NNNN/<11-char video>/<NNNNN>.wav
      VoxCeleb1/iden_split.txt                "<1|2|3> id10001/<video>/00001.wav"
      fluent_speech_commands_dataset/wavs/speakers/<speakerId>/<uuid>.wav
      fluent_speech_commands_dataset/data/{train,valid,test}_data.csv
      quesst14Database/Audio/quesst14_NNNNN.wav                 (documents)
      quesst14Database/{dev_queries/quesst14_dev_NNNN,eval_queries/quesst14_eval_NNNN}.wav
      quesst14Database/scoring/language_key_{utterances,dev,eval}.lst
          "quesst14Database/Audio/quesst14_00001.wav nnenglish"
      quesst14Database/scoring/groundtruth_quesst14_{dev,eval}/quesst14_{dev,eval}.rttm
          "LEXEME quesst14_00007 1 <tbeg> <tdur> quesst14_dev_0001 lex <NA> <NA>"
      SNIPS/{train,valid,test}/<Voice>-snips-<split>-<n>.wav        (Audio SNIPS)
      SNIPS/all.iob.snips.txt  "<id> BOS WORDS EOS<TAB>O <slot per word> <Intent>"
      SNIPS/slots.txt          "O" then the slot names, most frequent first
      CoVoST2/covost_v2.en_de.{train,dev,test}.tsv   "path<TAB>sentence<TAB>translation<TAB>client_id"
      CoVoST2/clips/common_voice_en_<n>.mp3         (CoVoST 2 En->De: English speech, German text)
      .done                                   JSON: arguments and counts

Layout notes (what the real releases do, mirrored on purpose):

* LibriSpeech and Fluent Speech Commands have disjoint speakers across
  train/dev/test; Speech Commands assigns speakers to validation/testing by
  TensorFlow's ``which_set`` hash of the ``<hash8>`` prefix (the rule s3prl's
  KS reader applies instead of reading the list files), and our hashes are
  drawn so that the rule and ``validation_list.txt``/``testing_list.txt`` agree.
* The separate Speech Commands test set (what s3prl's KS test reads) has
  class folders for the ten keywords, ``_unknown_`` and ``_silence_``;
  its ``_unknown_`` files carry the real archive's double ``.wav.wav``
  extension.
* VoxCeleb1 is the merged ``wav/`` tree that unzipping both official zips
  into one folder gives (torchaudio's and Hugging Face's layout).  s3prl's
  SID reader instead globs ``VoxCeleb1/*/wav/<path>`` (``dev/wav`` and
  ``test/wav``); a ``dev/wav -> ../wav`` symlink satisfies it.
  Speaker ids are consecutive from ``id10001`` and every speaker is in all
  three identification splits (closed-set).

Sizes: ``utterances`` (U) is the LibriSpeech count over ``speakers`` (N)
speakers.  The other layouts follow these rules (for the defaults N=8,
U=200 the whole corpus is 571 files, 0.37 hours, 35 MB):

* speaker roles: ``max(1, round(N/10))`` speakers each for dev and test,
  the rest train (the same speakers in LibriSpeech, Speech Commands and FSC);
* LibriSpeech: U utterances, ``U // N`` per speaker (+1 for the first
  ``U % N``), one chapter per speaker, 4-14 words each;
* Speech Commands: every speaker says the ten keywords and four of the
  twenty auxiliary v0.01 words ``max(1, round(U / (25 N)))`` times; the test
  set has, per test speaker, the ten keywords, two ``_unknown_`` words and
  two ``_silence_`` clips; three 15 s background noise files;
* VoxCeleb1: ``max(3, round(U / (4 N)))`` utterances per speaker, one in
  dev (split 2, its own video), one in test (split 3, its own video), the
  rest in train (split 1, four per video);
* Fluent Speech Commands: ``max(2, round(U / (3 N)))`` commands per
  speaker from the 31 FSC intents; train cycles through the intents, valid
  and test only use slot values seen in train (s3prl's IC reader builds its
  label maps from train);
* QUESST 2014 (query by example, English only): ``Q = min(30, max(2,
  round(U / 20)))`` dev and ``Q`` eval queries, one per query term (a
  two-word phrase of words of five letters or more, spoken alone);
  ``max(4 Q + 4, min(400, round(U / 4)))`` documents, sentences of 4-10
  words of the rest of the vocabulary, each term inserted into two of them
  (at most one term per document; the others contain none).  Queries are
  spoken by ``max(1, N // 3)`` of the speakers, documents by the others.
  The RTTM times of an occurrence are estimated from its character
  position in the sentence (espeak-ng gives no word timings); the
  scorer's ``.ecf.xml``/``.tlist.xml`` files are not written.
* Audio SNIPS (slot filling, the layout s3prl's ``snips_prepare_data.sh``
  writes): ``S = max(12, min(1000, round(0.3 U)))`` utterances of seven
  SNIPS intents (PlayMusic, AddToPlaylist, GetWeather, BookRestaurant,
  RateBook, SearchCreativeWork, SearchScreeningEvent) from a few templates
  with slot values drawn from small lists; ``max(2, round(0.15 S))`` each
  in ``valid`` and ``test``, the rest in ``train`` (which cycles through every
  template first).  Train speakers take SUPERB's train voice names (``Ivy``,
  ``Joanna``, ...), dev speakers the valid names, test speakers the test
  names (at most 8 / 4 / 4 speakers), so s3prl's speaker filter keeps them;
  each sentence is spoken once.  Slot tags are plain slot names (``O``
  outside), as in the published annotation.
* CoVoST 2 En->De (speech translation; the three split files CoVoST's
  ``get_covost_splits.py`` writes, next to a Common Voice ``clips`` folder):
  ``C = max(30, min(2000, 3 U))`` English sentences from the
  template grammar of :mod:`ofactl.data.synth_covost` with their German
  translations; ``H = max(4, round(0.1 C))`` each in dev and test (spoken
  by the dev / test speakers; more with ``dev_utterances`` /
  ``test_utterances``), ``C - 2 H`` in train.  Clips are mp3 as in Common Voice
  (16 kHz mono here; Common Voice's are 48 kHz) and ``client_id`` is a
  128-hex-digit speaker hash.

Each speaker is one espeak-ng voice variant with a fixed pitch, speed,
amplitude and word gap, a fixed spectral colour (a peaking filter and a
first-order tilt) and a fixed vocal-tract warp (a resampling factor that
moves formants and pitch together); utterances jitter pitch and speed a
little around the speaker's values.  White noise is added at 30-40 dB SNR.
Everything is drawn from ``seed``: the same seed gives byte-identical files.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import math
import os
import re
import shutil
import string
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ofactl.errors import OfactlError

__all__ = [
    "AUXILIARY_WORDS",
    "KEYWORDS",
    "LAYOUT_ROOTS",
    "PHONES",
    "SAMPLE_RATE",
    "VOCABULARY",
    "SynthReport",
    "synthesize_corpus",
]

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

Progress = Callable[[int, int], None]


# --------------------------------------------------------------------------- report


@dataclass(frozen=True)
class SynthReport:
    """What :func:`synthesize_corpus` wrote.

    Attributes:
        out_dir: the directory holding every layout.
        librispeech: ``out_dir/LibriSpeech``.
        speech_commands: ``out_dir/speech_commands_v0.01``.
        speech_commands_test: ``out_dir/speech_commands_test_set_v0.01``.
        voxceleb1: ``out_dir/VoxCeleb1``.
        fluent_commands: ``out_dir/fluent_speech_commands_dataset``.
        quesst14: ``out_dir/quesst14Database``.
        snips: ``out_dir/SNIPS`` (Audio SNIPS).
        covost2: ``out_dir/CoVoST2`` (CoVoST 2 En->De).
        counts: audio files per layout (keys of :data:`LAYOUT_ROOTS`, plus
            ``background_noise``).
        n_files: audio files in all.
        total_hours: hours of audio in all (background noise included).
        seconds: wall-clock seconds the build took (of the original build when
            ``reused``).
        seed, speakers, utterances: the arguments.
        reused: True when a finished corpus with these arguments was found and
            nothing was written.
    """

    out_dir: Path
    librispeech: Path
    speech_commands: Path
    speech_commands_test: Path
    voxceleb1: Path
    fluent_commands: Path
    quesst14: Path
    snips: Path
    covost2: Path
    counts: dict[str, int]
    n_files: int
    total_hours: float
    seconds: float
    seed: int
    speakers: int
    utterances: int
    reused: bool = False

    @classmethod
    def _make(cls, out_dir: Path, record: dict, reused: bool) -> SynthReport:
        roots = {key: out_dir / name for key, name in LAYOUT_ROOTS.items()}
        return cls(
            out_dir=out_dir,
            **roots,
            counts=dict(record["counts"]),
            n_files=int(record["n_files"]),
            total_hours=float(record["total_hours"]),
            seconds=float(record["seconds"]),
            seed=int(record["seed"]),
            speakers=int(record["speakers"]),
            utterances=int(record["utterances"]),
            reused=reused,
        )


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


def _plan_quesst14(plan: _Plan, speakers: list[_Speaker], utterances: int, seed: int) -> None:
    """QUESST 2014 documents and queries (see the module docstring), from their own generators."""
    text = _rng(seed, _STREAM_QUESST, 0)
    jitter = _rng(seed, _STREAM_QUESST, 1)
    root = LAYOUT_ROOTS["quesst14"]
    n_queries = min(30, max(2, round(utterances / 20)))
    n_terms = 2 * n_queries
    n_docs = max(2 * n_terms + 4, min(400, round(utterances / 4)))
    long_words = [w for w in VOCABULARY if len(w) >= 5]
    reserved = [long_words[i] for i in text.permutation(len(long_words))[: 2 * n_terms]]
    terms = [f"{reserved[2 * k]} {reserved[2 * k + 1]}" for k in range(n_terms)]
    filler = [w for w in VOCABULARY if w not in set(reserved)]
    order = [speakers[i] for i in text.permutation(len(speakers))]
    n_query_voices = max(1, len(speakers) // 3)
    query_voices, doc_voices = order[:n_query_voices], order[n_query_voices:]
    holder: list[str | None] = [None] * n_docs
    for k, slot in enumerate(text.permutation(n_docs)[: 2 * n_terms]):  # every term in two documents
        holder[int(slot)] = terms[k // 2]
    for d in range(n_docs):
        words = [filler[i] for i in text.integers(0, len(filler), size=int(text.integers(4, 11)))]
        term = holder[d]
        at = int(text.integers(0, len(words) + 1))
        if term is not None:
            words[at:at] = term.split()
        doc_id = f"quesst14_{d + 1:05d}"
        voice = doc_voices[int(text.integers(0, len(doc_voices)))].voice
        job = plan.add("quesst14", f"{root}/Audio/{doc_id}.wav", " ".join(words), voice, jitter)
        plan.quesst_docs.append((doc_id, job, words, term, at))
    for part, folder, chosen in (("dev", "dev_queries", terms[:n_queries]), ("eval", "eval_queries", terms[n_queries:])):
        for q, term in enumerate(chosen, start=1):
            query_id = f"quesst14_{part}_{q:04d}"
            voice = query_voices[int(text.integers(0, len(query_voices)))].voice
            plan.add("quesst14", f"{root}/{folder}/{query_id}.wav", term, voice, jitter)
            plan.quesst_queries[part].append((query_id, term))


#: Audio SNIPS: slot values (lower case, spoken as written) and intent templates ({slot} fills one slot).
_SNIPS_VALUES: dict[str, tuple[str, ...]] = {
    "artist": ("madonna", "the beatles", "miles davis", "adele", "bob marley", "taylor swift"),
    "service": ("spotify", "youtube", "deezer", "pandora"),
    "music_item": ("song", "album", "track"),
    "genre": ("jazz", "rock", "blues", "classical"),
    "playlist": ("road trip", "chill evening", "morning coffee", "workout mix", "summer hits"),
    "city": ("paris", "new york", "london", "tokyo", "berlin", "chicago"),
    "timeRange": ("tomorrow", "tonight", "next week", "this weekend", "at noon"),
    "restaurant_type": ("pizzeria", "steakhouse", "sushi bar", "diner"),
    "party_size_number": ("two", "three", "four", "six"),
    "object_name": ("the hobbit", "war and peace", "dune", "the odyssey"),
    "rating_value": ("one", "two", "three", "four"),
    "best_rating": ("five", "ten"),
    "object_type": ("book", "novel", "movie", "series"),
    "movie_name": ("star wars", "the matrix", "frozen", "jaws"),
    "spatial_relation": ("nearby", "close by", "in the area"),
    "object_location_type": ("movie theatre", "cinema"),
}
_SNIPS_TEMPLATES: tuple[tuple[str, str], ...] = (
    ("PlayMusic", "play {artist} on {service}"),
    ("PlayMusic", "play some {genre} music"),
    ("PlayMusic", "i want to hear a {music_item} by {artist}"),
    ("AddToPlaylist", "add this {music_item} to my {playlist} playlist"),
    ("AddToPlaylist", "put {artist} on the {playlist} playlist"),
    ("GetWeather", "what is the weather in {city} {timeRange}"),
    ("GetWeather", "will it be cold in {city}"),
    ("GetWeather", "forecast for {timeRange}"),
    ("BookRestaurant", "book a table for {party_size_number} at a {restaurant_type} in {city}"),
    ("BookRestaurant", "reserve a {restaurant_type} for {party_size_number} people {timeRange}"),
    ("RateBook", "rate {object_name} {rating_value} out of {best_rating}"),
    ("RateBook", "give this {object_type} {rating_value} stars"),
    ("SearchCreativeWork", "find the {object_type} called {object_name}"),
    ("SearchCreativeWork", "show me the movie {movie_name}"),
    ("SearchScreeningEvent", "when is {movie_name} playing {spatial_relation}"),
    ("SearchScreeningEvent", "find a {object_location_type} showing {movie_name}"),
)
_SNIPS_SPLITS = {"train": "train", "dev": "valid", "test": "test"}


def _snips_sentence(template: str, rng: np.random.Generator) -> tuple[list[str], list[str]]:
    """Words (lower case) and one slot tag per word (``O`` or the slot name) of a filled template."""
    words: list[str] = []
    tags: list[str] = []
    for piece in template.split():
        if piece.startswith("{"):
            slot = piece[1:-1]
            values = _SNIPS_VALUES[slot]
            value = values[int(rng.integers(0, len(values)))].split()
            words += value
            tags += [slot] * len(value)
        else:
            words.append(piece)
            tags.append("O")
    return words, tags


def _plan_snips(plan: _Plan, speakers: list[_Speaker], utterances: int, seed: int) -> None:
    """Audio SNIPS utterances (see the module docstring), from their own generators."""
    from ofactl.data.layouts.snips import SUPERB_SPEAKERS

    text = _rng(seed, _STREAM_SNIPS, 0)
    jitter = _rng(seed, _STREAM_SNIPS, 1)
    root = LAYOUT_ROOTS["snips"]
    total = max(12, min(1000, round(0.3 * utterances)))
    held = max(2, round(0.15 * total))
    counts = {"train": total - 2 * held, "dev": held, "test": held}
    order = [_SNIPS_TEMPLATES[i] for i in text.permutation(len(_SNIPS_TEMPLATES))]
    for role, folder in _SNIPS_SPLITS.items():
        names = SUPERB_SPEAKERS[folder]
        voices = [s for s in speakers if s.role == role][: len(names)]
        for k in range(counts[role]):
            if role == "train":  # every template first, so valid/test only use slot types seen in train
                intent, template = order[k % len(order)]
            else:
                intent, template = _SNIPS_TEMPLATES[int(text.integers(0, len(_SNIPS_TEMPLATES)))]
            words, tags = _snips_sentence(template, text)
            spk = k % len(voices)
            uid = f"{names[spk]}-snips-{folder}-{k}"
            plan.add("snips", f"{root}/{folder}/{uid}.wav", " ".join(words), voices[spk].voice, jitter)
            plan.snips_rows.append((uid, folder, words, tags, intent))


def _plan_covost(plan: _Plan, speakers: list[_Speaker], utterances: int, seed: int, sizes: _Sizes) -> None:
    """CoVoST 2 En->De sentence pairs (see the module docstring), from their own generators."""
    from ofactl.data.synth_covost import sentence_pair

    text = _rng(seed, _STREAM_COVOST, 0)
    jitter = _rng(seed, _STREAM_COVOST, 1)
    root = LAYOUT_ROOTS["covost2"]
    total = max(30, min(2000, 3 * utterances))
    held = max(4, round(0.1 * total))
    counts = {"train": total - 2 * held, "dev": max(held, sizes.dev_utterances or 0),
              "test": max(held, sizes.test_utterances or 0)}
    clip_ids = text.choice(10**7, size=sum(counts.values()), replace=False) + 10**7  # 8-digit Common Voice-like numbers
    k = 0
    for role in ("train", "dev", "test"):
        voices = [s for s in speakers if s.role == role]
        for i in range(counts[role]):
            english, german = sentence_pair(text)
            spk = voices[i % len(voices)]
            client = hashlib.sha512(f"ofactl-synth-{seed}-{spk.index}".encode()).hexdigest()
            clip = f"common_voice_en_{int(clip_ids[k])}.mp3"
            k += 1
            plan.add("covost2", f"{root}/clips/{clip}", english, spk.voice, jitter)
            plan.covost_rows.append((role, clip, english, german, client))


def _write_snips(plan: _Plan, stage: Path) -> None:
    """``all.iob.snips.txt`` (test, valid, train, as s3prl's preparation writes it) and ``slots.txt``."""
    root = stage / LAYOUT_ROOTS["snips"]
    lines, freq = [], {}
    for folder in ("test", "valid", "train"):
        for uid, part, words, tags, intent in plan.snips_rows:
            if part != folder:
                continue
            lines.append(f"{uid} BOS {' '.join(words).upper()} EOS\tO {' '.join(tags)} {intent}")
            for tag in tags:
                freq[tag] = freq.get(tag, 0) + 1
    _write_text(root / "all.iob.snips.txt", lines)
    slots = ["O"] + sorted((t for t in freq if t != "O"), key=lambda t: (-freq[t], t))  # s3prl skips line 1
    (root / "slots.txt").write_text("\n".join(slots), encoding="utf-8")


# --------------------------------------------------------------------------- audio


def _find_espeak() -> str:
    exe = shutil.which("espeak-ng")
    if exe is None:
        raise OfactlError(
            "espeak-ng was not found on PATH; the synthetic corpus is spoken by it",
            hint="install espeak-ng: apt-get install espeak-ng (macOS: brew install espeak-ng)",
        )
    return exe


def _espeak_version(exe: str) -> str:
    try:
        out = subprocess.run([exe, "--version"], capture_output=True, text=True, timeout=30, check=False)
    except OSError as err:
        raise OfactlError(f"cannot run {exe}: {err}", hint="reinstall espeak-ng: apt-get install espeak-ng") from err
    match = re.search(r"text-to-speech:\s*(\S+)", out.stdout)
    return match.group(1) if match else out.stdout.strip()[:40]


def _speak(exe: str, job: _Job, wav_path: Path) -> tuple[np.ndarray, int, list[str]]:
    """Speak ``job.text``; returns (samples float64, sample rate, phones)."""
    import soundfile as sf

    voice = job.voice
    assert voice is not None
    args = [
        exe,
        "-v", f"{_ESPEAK_VOICE}+{voice.variant}",
        "-p", str(job.pitch),
        "-s", str(job.speed),
        "-a", str(voice.amplitude),
        "-g", str(voice.word_gap),
        "-w", str(wav_path),
        "--ipa", "--sep=_",
        job.text,
    ]  # fmt: skip
    try:
        proc = subprocess.run(args, capture_output=True, timeout=120, check=False)
    except (OSError, subprocess.TimeoutExpired) as err:
        raise OfactlError(f"espeak-ng failed on {job.text!r}: {err}", hint="check the espeak-ng install") from err
    if proc.returncode != 0 or not wav_path.is_file():
        detail = proc.stderr.decode("utf-8", "replace").strip().splitlines()
        raise OfactlError(
            f"espeak-ng exited with {proc.returncode} on {job.text!r}: {detail[-1] if detail else 'no output'}",
            hint="check the espeak-ng install: `espeak-ng -v en-us+m1 hello` must work",
        )
    data, sr = sf.read(str(wav_path), dtype="int16", always_2d=False)
    wav_path.unlink()
    phones = []
    for token in proc.stdout.decode("utf-8").replace("_", " ").split():
        phone = token.replace("ˈ", "").replace("ˌ", "")
        if phone:
            if phone not in PHONES:
                raise OfactlError(
                    f"espeak-ng gave the phone {phone!r} for {job.text!r}, which is not in the phone inventory",
                    hint="use espeak-ng 1.51 (apt-get install espeak-ng), whose inventory ofactl.data.synth.PHONES lists",
                )
            phones.append(phone)
    return data.astype(np.float64) / 32768.0, int(sr), phones


def _colour(x: np.ndarray, sr: int, voice: _Voice) -> np.ndarray:
    """The speaker's fixed spectral colour, then its vocal-tract warp and resampling to 16 kHz."""
    import torch
    import torchaudio.functional as AF

    with torch.no_grad():
        t = torch.from_numpy(x).to(torch.float64).unsqueeze(0)
        t = AF.equalizer_biquad(t, sr, voice.eq_hz, voice.eq_db, voice.eq_q)
        t = torch.cat([t[:, :1], t[:, 1:] - voice.tilt * t[:, :-1]], dim=1)
        # Claiming the audio was recorded at warp * sr and resampling it to 16 kHz scales
        # every frequency (formants and pitch) by warp and durations by 1 / warp.
        src = round(sr * voice.warp / 50.0) * 50
        t = AF.resample(t, src, SAMPLE_RATE)
    return t.squeeze(0).numpy()


def _fit(x: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """Exactly ``n`` samples: the loudest window of a long clip, or a short one at a random offset."""
    if len(x) >= n:
        energy = np.concatenate([[0.0], np.cumsum(x * x)])
        start = int(np.argmax(energy[n:] - energy[:-n]))
        return x[start : start + n].copy()
    out = np.zeros(n)
    offset = int(rng.integers(0, n - len(x) + 1))
    out[offset : offset + len(x)] = x
    return out


def _speech_power(x: np.ndarray) -> float:
    """Mean power of the 20 ms frames within 30 dB of the loudest."""
    frame = SAMPLE_RATE // 50
    n = len(x) // frame
    if n == 0:
        return float(np.mean(x * x)) if len(x) else 0.0
    power = np.mean(x[: n * frame].reshape(n, frame) ** 2, axis=1)
    active = power[power >= power.max() * 1e-3]
    return float(active.mean())


def _noise(kind: str, n: int, rms_db: float, rng: np.random.Generator) -> np.ndarray:
    if kind == "white":
        x = rng.standard_normal(n)
    elif kind == "pink":
        spec = np.fft.rfft(rng.standard_normal(n))
        f = np.arange(len(spec), dtype=np.float64)
        f[0] = 1.0
        x = np.fft.irfft(spec / np.sqrt(f), n)
    elif kind == "hum":
        t = np.arange(n) / SAMPLE_RATE
        base = float(rng.choice([50.0, 60.0]))
        x = sum(
            (0.6**h) * np.sin(2 * np.pi * base * (h + 1) * t + rng.uniform(0, 2 * np.pi)) for h in range(6)
        ) + 0.05 * rng.standard_normal(n)
    else:  # pragma: no cover - plan only uses the three kinds
        raise ValueError(kind)
    x = x - x.mean()
    return x * (10 ** (rms_db / 20) / max(float(np.sqrt(np.mean(x * x))), 1e-12))


def _to_int16(x: np.ndarray) -> np.ndarray:
    return np.clip(np.round(x * 32767.0), -32768, 32767).astype(np.int16)


def _render(job: _Job, exe: str, stage: Path, seed: int) -> tuple[int, list[str]]:
    """Write one audio file; returns (samples written, phones)."""
    import soundfile as sf

    rng = _rng(seed, _STREAM_NOISE, job.index)
    phones: list[str] = []
    if job.noise is not None:
        y = _noise(job.noise.removesuffix("_noise"), int(job.seconds * SAMPLE_RATE), job.noise_rms_db, rng)
    else:
        assert job.voice is not None
        x, sr, phones = _speak(exe, job, stage / ".work" / f"{job.index}.wav")
        y = _colour(x, sr, job.voice)
        if job.fixed_samples is not None:
            y = _fit(y, job.fixed_samples, rng)
        snr_db = rng.uniform(*_SNR_DB)
        y = y + rng.standard_normal(len(y)) * math.sqrt(_speech_power(y) / 10 ** (snr_db / 10))
        level = job.voice.level_db + rng.uniform(-1.0, 1.0)
        y = y * (10 ** (level / 20) / max(float(np.abs(y).max()), 1e-9))
    path = stage / job.relpath
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".mp3":  # Common Voice's format (libsndfile 1.1+ writes it)
        sf.write(str(path), _to_int16(y), SAMPLE_RATE, format="MP3", subtype="MPEG_LAYER_III")
    else:
        fmt = "FLAC" if path.suffix == ".flac" else "WAV"
        sf.write(str(path), _to_int16(y), SAMPLE_RATE, subtype="PCM_16", format=fmt)
    return len(y), phones


def _render_all(
    plan: _Plan, exe: str, stage: Path, seed: int, progress: Progress | None, workers: int
) -> list[tuple[int, list[str]]]:
    import torch  # noqa: F401  (imported once here, not concurrently in the workers)
    import torchaudio.functional  # noqa: F401

    (stage / ".work").mkdir()
    total = len(plan.jobs)
    results: list[tuple[int, list[str]] | None] = [None] * total
    if progress is not None:
        progress(0, total)
    pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="ofactl-synth")
    try:
        futures = {pool.submit(_render, job, exe, stage, seed): job.index for job in plan.jobs}
        pending = set(futures)
        done = 0
        while pending:
            finished, pending = wait(pending, return_when=FIRST_EXCEPTION)
            for fut in finished:
                err = fut.exception()
                if err is not None:
                    raise err
                results[futures[fut]] = fut.result()
                done += 1
            if progress is not None:
                progress(done, total)
    finally:  # on an error or Ctrl-C: drop the queued jobs, let the running ones end
        pool.shutdown(wait=True, cancel_futures=True)
    shutil.rmtree(stage / ".work")
    return results  # type: ignore[return-value]


# --------------------------------------------------------------------------- metadata


def _write_text(path: Path, lines: list[str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")


def _write_metadata(plan: _Plan, results: list[tuple[int, list[str]]], stage: Path) -> None:
    ls = stage / LAYOUT_ROOTS["librispeech"]
    by_chapter: dict[tuple[_Speaker, int], list[tuple[str, int, str]]] = {}
    minutes: dict[int, float] = {}
    for spk, utt, job, sentence in plan.ls_utts:
        by_chapter.setdefault((spk, spk.ls_chapter), []).append((utt, job, sentence))
        minutes[spk.index] = minutes.get(spk.index, 0.0) + results[job][0] / SAMPLE_RATE / 60
    for (spk, chapter), utts in by_chapter.items():
        folder = ls / _LS_SUBSETS[spk.role] / str(spk.ls_id) / str(chapter)
        stem = f"{spk.ls_id}-{chapter}"
        utts.sort()
        _write_text(folder / f"{stem}.trans.txt", [f"{utt} {sentence.upper()}" for utt, _, sentence in utts])
        _write_text(folder / f"{stem}.phones.txt", [f"{utt} {' '.join(results[job][1])}" for utt, job, _ in utts])
    rows = [
        "; Synthetic LibriSpeech-layout speakers written by `ofactl data synth` (espeak-ng voices).",
        "; Columns as in LibriSpeech's SPEAKERS.TXT; MINUTES is the speaker's audio in this corpus.",
        ";ID  |SEX| SUBSET           |MINUTES| NAME",
    ]
    for spk in sorted((s for s in plan.speakers if s.index in minutes), key=lambda s: s.ls_id):
        subset = _LS_SUBSETS[spk.role]
        rows.append(f"{spk.ls_id:<5}| {spk.voice.sex} | {subset:<17}| {minutes[spk.index]:5.2f} | {spk.voice.name}")
    _write_text(ls / "SPEAKERS.TXT", rows)

    sc = stage / LAYOUT_ROOTS["speech_commands"]
    for role, name in _SC_LISTS.items():
        _write_text(sc / name, sorted(plan.sc_lists[role]))

    vox = stage / LAYOUT_ROOTS["voxceleb1"]
    _write_text(vox / "iden_split.txt", [f"{split} {rel}" for split, rel in sorted(plan.vox_rows, key=lambda r: r[1])])

    fsc = stage / LAYOUT_ROOTS["fluent_commands"] / "data"
    fsc.mkdir(parents=True, exist_ok=True)
    for role, name in _FSC_SUBSETS.items():
        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator="\n")
        writer.writerow(_FSC_HEADER)
        for i, row in enumerate(sorted(plan.fsc_rows[role], key=lambda r: (r[1], r[0]))):
            writer.writerow([i, *row])
        (fsc / f"{name}_data.csv").write_text(buf.getvalue(), encoding="utf-8")

    _write_quesst14(plan, results, stage)
    _write_snips(plan, stage)
    from ofactl.data.synth_covost import write_tsvs

    write_tsvs(stage / LAYOUT_ROOTS["covost2"], plan.covost_rows)


def _write_quesst14(plan: _Plan, results: list[tuple[int, list[str]]], stage: Path) -> None:
    """The language keys and the ground-truth RTTM (occurrence times estimated from character positions)."""
    root = LAYOUT_ROOTS["quesst14"]
    scoring = stage / root / "scoring"
    _write_text(scoring / "language_key_utterances.lst",
                [f"{root}/Audio/{doc_id}.wav nnenglish" for doc_id, *_ in plan.quesst_docs])
    for part, folder in (("dev", "dev_queries"), ("eval", "eval_queries")):
        queries = plan.quesst_queries[part]
        _write_text(scoring / f"language_key_{part}.lst", [f"{root}/{folder}/{q}.wav nnenglish" for q, _ in queries])
        by_term = {term: q for q, term in queries}
        lines = []
        for doc_id, job, words, term, at in plan.quesst_docs:
            if term not in by_term:
                continue
            seconds = results[job][0] / SAMPLE_RATE
            chars = len(" ".join(words))
            before = len(" ".join(words[:at])) + (1 if at else 0)
            begin, duration = seconds * before / chars, seconds * len(term) / chars
            lines.append(f"LEXEME {doc_id} 1 {begin:.3f} {duration:.3f} {by_term[term]} lex <NA> <NA>")
        _write_text(scoring / f"groundtruth_quesst14_{part}" / f"quesst14_{part}.rttm", lines)


# --------------------------------------------------------------------------- entry point


@contextmanager
def _locked(directory: Path) -> Iterator[None]:
    """An exclusive advisory lock on ``directory`` (POSIX; a no-op elsewhere)."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows
        yield
        return
    fd = os.open(directory, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


def _check_int(name: str, value: object, low: int, high: int, hint: str | None = None) -> int:
    hint = hint or f"pass a whole number from {low} to {high}"
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise OfactlError(f"{name} must be a whole number, got {value!r}", hint=hint)
    if not low <= int(value) <= high:
        raise OfactlError(f"{name} must be between {low} and {high}, got {value}", hint=hint)
    return int(value)


def _read_done(path: Path) -> dict | None:
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) else None


def synthesize_corpus(
    out_dir: str | os.PathLike[str],
    speakers: int = 8,
    utterances: int = 200,
    seed: int = 0,
    progress: Progress | None = None,
    *,
    overwrite: bool = False,
    workers: int | None = None,
    held_out_speakers: int | None = None,
    dev_utterances: int | None = None,
    test_utterances: int | None = None,
) -> SynthReport:
    """Speak a small synthetic corpus into ``out_dir`` in the public dataset layouts.

    Writes LibriSpeech (train-clean-100 / dev-clean / test-clean, with our
    ``*.phones.txt``), Speech Commands v0.01 and its test set, VoxCeleb1 (for
    identification), Fluent Speech Commands, QUESST 2014 (English) and
    Audio SNIPS (slot filling) and CoVoST 2 En->De; see the module docstring for
    the exact paths and the rule that sizes each layout.  Everything is built
    in a hidden folder inside ``out_dir`` and moved into place at the end;
    ``out_dir/.done`` is written last.  Calling again with the same arguments
    returns at once (``reused=True``).

    Args:
        out_dir: directory to write into (created if needed).
        speakers: number of synthetic speakers (3 to 200): dev and test get
            ``max(1, round(speakers / 10))`` each, train the rest.
        utterances: number of LibriSpeech utterances (at least ``speakers``).
        seed: everything (texts, voices, noise, ids) is drawn from it; the same
            seed gives byte-identical files on the same espeak-ng.
        progress: called as ``progress(done, total)`` from the calling thread
            as audio files are written (first with ``done=0``).
        overwrite: replace a corpus built with other arguments, or layout
            folders not written by this function.
        workers: espeak-ng processes run at once (default: ``min(4, max(2, cpus))``).
        held_out_speakers: speakers for dev and for test, each (default
            ``max(1, round(speakers / 10))``).
        dev_utterances, test_utterances: make the dev / test split of
            LibriSpeech, Speech Commands (dev; its separate test set for test),
            VoxCeleb1 and Fluent Speech Commands at least this large, by giving
            each held-out speaker (every speaker for VoxCeleb1, which is
            closed-set) as many utterances as it takes, and CoVoST 2's dev / test
            that many pairs; the training splits keep their sizes.  Default: the sizes of the module docstring.

    Returns:
        A :class:`SynthReport` with the layout roots, counts, hours and seconds.

    Raises:
        OfactlError: bad arguments, espeak-ng missing or failing, or ``out_dir``
            holding another corpus (or other layout folders) without ``overwrite``.
    """
    t0 = time.perf_counter()
    speakers = _check_int(
        "speakers", speakers, _MIN_SPEAKERS, _MAX_SPEAKERS, hint="train, dev and test need a speaker each: 3 or more"
    )
    utterances = _check_int(
        "utterances", utterances, speakers, _MAX_UTTERANCES, hint="at least one LibriSpeech utterance per speaker"
    )
    seed = _check_int("seed", seed, 0, 2**63 - 1)
    if held_out_speakers is not None:
        held_out_speakers = _check_int("held_out_speakers", held_out_speakers, 1, (speakers - 1) // 2,
                                       hint="train needs at least one speaker besides dev and test")
    for name, value in (("dev_utterances", dev_utterances), ("test_utterances", test_utterances)):
        if value is not None:
            _check_int(name, value, 1, _MAX_UTTERANCES)
    sizes = _Sizes(held_out_speakers, dev_utterances, test_utterances)
    if workers is None:
        workers = min(4, max(2, os.cpu_count() or 1))
    workers = _check_int("workers", workers, 1, 64)
    out = Path(out_dir).expanduser().absolute()
    if out.exists() and not out.is_dir():
        raise OfactlError(f"{out} exists and is not a directory", hint="pass a directory for the corpus")
    wanted = {"format_version": FORMAT_VERSION, "seed": seed, "speakers": speakers, "utterances": utterances,
              "held_out_speakers": held_out_speakers, "dev_utterances": dev_utterances,
              "test_utterances": test_utterances}
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise OfactlError(f"cannot create {out}: {err}", hint="choose a writable directory") from err

    with _locked(out):
        done_path = out / DONE_FILE
        record = _read_done(done_path) if done_path.is_file() else None
        ours = record is not None
        complete = ours and all((out / name).is_dir() for name in LAYOUT_ROOTS.values())
        if record is not None and not overwrite:
            if {k: record.get(k) for k in wanted} == wanted:
                if complete:
                    return SynthReport._make(out, record, reused=True)
            else:
                keys = [k for k in wanted if record.get(k) != wanted[k]]
                was = ", ".join(f"{k}={record.get(k)}" for k in keys)
                now = ", ".join(f"{k}={wanted[k]}" for k in keys)
                raise OfactlError(
                    f"{out} already holds a synthetic corpus built with {was}; asked for {now}",
                    hint="use another directory, or overwrite it (overwrite=True, `--overwrite`)",
                )
        existing = [name for name in LAYOUT_ROOTS.values() if (out / name).exists()]
        if existing and not ours and not overwrite:
            raise OfactlError(
                f"{out} already has {', '.join(existing)}, not written by `ofactl data synth`",
                hint="use an empty directory, or overwrite them (overwrite=True, `--overwrite`)",
            )

        exe = _find_espeak()
        version = _espeak_version(exe)
        plan = _plan(speakers, utterances, seed, sizes)
        for stale in out.glob(".synth-tmp-*"):  # left by a killed run; we hold the lock
            shutil.rmtree(stale, ignore_errors=True)
        stage = Path(tempfile.mkdtemp(prefix=".synth-tmp-", dir=out))
        try:
            results = _render_all(plan, exe, stage, seed, progress, workers)
            _write_metadata(plan, results, stage)
            counts: dict[str, int] = {}
            for job in plan.jobs:
                counts[job.layout] = counts.get(job.layout, 0) + 1
            samples = sum(n for n, _ in results)
            done_path.unlink(missing_ok=True)
            for name in LAYOUT_ROOTS.values():
                target = out / name
                if target.is_symlink() or target.is_file():
                    target.unlink()
                elif target.exists():
                    shutil.rmtree(target)
                os.replace(stage / name, target)
            record = {
                **wanted,
                "espeak_ng": version,
                "counts": counts,
                "n_files": len(plan.jobs),
                "total_hours": round(samples / SAMPLE_RATE / 3600, 6),
                "seconds": round(time.perf_counter() - t0, 3),
                "voices": {s.index: {"role": s.role, **s.voice.__dict__} for s in plan.speakers},
            }
            tmp_done = stage / DONE_FILE
            tmp_done.write_text(json.dumps(record, indent=1) + "\n", encoding="utf-8")
            os.replace(tmp_done, done_path)
        finally:
            shutil.rmtree(stage, ignore_errors=True)
    return SynthReport._make(out, record, reused=False)
