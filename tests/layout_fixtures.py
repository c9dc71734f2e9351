"""Tiny copies of the published corpus layouts, for tests.

Each ``make_*`` writes a small tree with the same folder names, file names,
split files and CSV headers as the real dataset, and real (tiny) audio.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import soundfile as sf

SR = 16_000


def write_audio(path: Path, seconds: float = 0.3, sr: int = SR, channels: int = 1, kind: str = "sine",
                seed: int = 0) -> Path:
    """Write a PCM-16 wav (or flac, by extension): ``kind`` is sine, noise or silent."""
    path.parent.mkdir(parents=True, exist_ok=True)
    n = max(1, int(round(seconds * sr)))
    t = np.arange(n) / sr
    if kind == "sine":
        x = 0.3 * np.sin(2 * np.pi * (220 + 20 * (seed % 10)) * t)
    elif kind == "noise":
        x = 0.1 * np.random.default_rng(seed).standard_normal(n)
    elif kind == "silent":
        x = np.zeros(n)
    else:
        raise ValueError(kind)
    data = np.repeat(x[:, None], channels, axis=1) if channels > 1 else x
    sf.write(str(path), data.astype(np.float32), sr, subtype="PCM_16")
    return path


# ----------------------------------------------------------------------------- LibriSpeech
def make_librispeech(base: Path) -> Path:
    """``base/LibriSpeech`` with dev-clean (2 chapters) and train-clean-100 (1 chapter).

    Problems built in: 1462-170138-0001 is in the transcript but has no flac
    (missing); 1462-170138-0009.flac is in no transcript (unlabeled).
    """
    root = base / "LibriSpeech"
    root.mkdir(parents=True)
    for name in ("README.TXT", "SPEAKERS.TXT", "CHAPTERS.TXT", "BOOKS.TXT", "LICENSE.TXT"):
        (root / name).write_text(";placeholder\n")
    chapter = root / "dev-clean" / "1272" / "128104"
    texts = {"1272-128104-0000": "MISTER QUILTER IS THE APOSTLE OF THE MIDDLE CLASSES",
             "1272-128104-0001": "NOR IS MISTER QUILTER'S MANNER LESS INTERESTING",
             "1272-128104-0002": "HE TELLS US THAT AT THIS FESTIVE SEASON"}
    for i, uid in enumerate(texts):
        write_audio(chapter / f"{uid}.flac", 0.2 + 0.1 * i, seed=i)
    (chapter / "1272-128104.trans.txt").write_text("".join(f"{k} {v}\n" for k, v in texts.items()))
    (chapter / "1272-128104.phones.txt").write_text(
        "1272-128104-0000 M IH S T ER K W IH L T ER\n1272-128104-0001 N AO R IH Z\n")

    chapter = root / "dev-clean" / "1462" / "170138"
    write_audio(chapter / "1462-170138-0000.flac", 0.5)
    write_audio(chapter / "1462-170138-0009.flac", 0.5)
    (chapter / "1462-170138.trans.txt").write_text(
        "1462-170138-0000 HE HAD WRITTEN A NUMBER OF BOOKS HIMSELF\n"
        "1462-170138-0001 AMONG THEM A HISTORY OF DANCING\n")

    chapter = root / "train-clean-100" / "19" / "198"
    for i in range(2):
        write_audio(chapter / f"19-198-000{i}.flac", 0.3, seed=i)
    (chapter / "19-198.trans.txt").write_text(
        "19-198-0000 NORTHANGER ABBEY\n19-198-0001 THIS LITTLE WORK WAS FINISHED IN THE YEAR EIGHTEEN O THREE\n")
    return root


# ----------------------------------------------------------------------------- Speech Commands v0.01
#: File names whose bucket under the dataset's which_set() hash is known:
#: speaker "00000000" -> validation, "00000002" -> testing, "00000001"/"00000003"/"00000004" -> training.
SC_FILES = {
    "yes/00000000_nohash_0.wav": "dev",
    "yes/00000001_nohash_0.wav": "train",
    "yes/00000001_nohash_1.wav": "train",
    "yes/00000002_nohash_0.wav": None,  # the testing part of the training archive: dropped
    "no/00000003_nohash_0.wav": "train",
    "no/00000007_nohash_0.wav": "dev",
    "bed/00000004_nohash_0.wav": "train",
    "bed/00000000_nohash_0.wav": "dev",
}
SC_TEST_FILES = ("yes/0c40e715_nohash_0.wav", "_unknown_/bed_0c40e715_nohash_0.wav",
                 "_silence_/silence_0001.wav")


def make_speech_commands(base: Path, with_test: bool = True) -> Path:
    """``base/speech_commands_v0.01`` (+ ``base/speech_commands_test_set_v0.01``).

    Background noise: white_noise.wav 2.5 s (3 segments), pink_noise.wav 1.0 s (1 segment).
    """
    root = base / "speech_commands_v0.01"
    for i, rel in enumerate(SC_FILES):
        write_audio(root / rel, 1.0, seed=i)
    write_audio(root / "_background_noise_" / "white_noise.wav", 2.5, kind="noise")
    write_audio(root / "_background_noise_" / "pink_noise.wav", 1.0, kind="noise", seed=1)
    (root / "_background_noise_" / "README.md").write_text("noise files\n")
    (root / "LICENSE").write_text("CC BY 4.0\n")
    (root / "README.md").write_text("speech commands\n")
    (root / "validation_list.txt").write_text(
        "".join(f"{k}\n" for k, v in SC_FILES.items() if v == "dev"))
    (root / "testing_list.txt").write_text(
        "".join(f"{k}\n" for k, v in SC_FILES.items() if v is None))
    if with_test:
        for i, rel in enumerate(SC_TEST_FILES):
            write_audio(base / "speech_commands_test_set_v0.01" / rel, 1.0, seed=i)
    return root


# ----------------------------------------------------------------------------- VoxCeleb1
VOX_SPLIT = [
    ("1", "id10001/1zcIwhmdeo4/00001.wav"),
    ("1", "id10001/1zcIwhmdeo4/00002.wav"),
    ("2", "id10001/7w0IBEWc9Qw/00001.wav"),
    ("3", "id10001/7w0IBEWc9Qw/00002.wav"),
    ("1", "id10270/5r0dWxy17C8/00001.wav"),
    ("3", "id10270/5r0dWxy17C8/00002.wav"),
    ("1", "id10002/6WO410QOeuo/00001.wav"),  # listed, never written: missing
]


def make_voxceleb1(base: Path, s3prl_layout: bool = True) -> Path:
    """``base/VoxCeleb1`` with ``dev/wav`` + ``test/wav`` (s3prl) or one merged ``wav``.

    iden_split.txt also holds one malformed line (bad_entry).
    """
    root = base / "VoxCeleb1"
    for i, (_, rel) in enumerate(VOX_SPLIT[:-1]):
        test_speaker = rel.startswith("id10270")
        sub = ("test" if test_speaker else "dev") + "/wav" if s3prl_layout else "wav"
        write_audio(root / sub / rel, 0.4, seed=i)
    (root / "iden_split.txt").write_text("".join(f"{c} {r}\n" for c, r in VOX_SPLIT) + "4 id10003/x.wav\n")
    return root


# ----------------------------------------------------------------------------- Fluent Speech Commands
FSC_HEADER = ",path,speakerId,transcription,action,object,location\n"


def make_fluent(base: Path) -> Path:
    """``base/fluent_speech_commands_dataset``: train 3 rows (1 missing file), valid 2 rows
    (one reuses a train file: duplicate id), test header only (empty split)."""
    root = base / "fluent_speech_commands_dataset"
    spk = "2BqVo8kVB2Skwgyb"
    names = ["0a3129c0-4474-11e9-a9a5-5dbec3b8816a", "0ee42a80-4474-11e9-a9a5-5dbec3b8816a",
             "1b3da530-4474-11e9-a9a5-5dbec3b8816a"]
    for i, n in enumerate(names):
        write_audio(root / "wavs" / "speakers" / spk / f"{n}.wav", 0.6, seed=i)
    rel = [f"wavs/speakers/{spk}/{n}.wav" for n in names]
    data = root / "data"
    data.mkdir(parents=True)
    (data / "train_data.csv").write_text(
        FSC_HEADER
        + f"0,{rel[0]},{spk},Change language,change language,none,none\n"
        + f'1,{rel[1]},{spk},"Turn on the lights, please",activate,lights,kitchen\n'
        + f"2,wavs/speakers/{spk}/ffffffff-4474-11e9-a9a5-5dbec3b8816a.wav,{spk},Stop,deactivate,music,none\n")
    (data / "valid_data.csv").write_text(
        FSC_HEADER
        + f"0,{rel[2]},{spk},Volume up,increase,volume,none\n"
        + f"1,{rel[0]},{spk},Change language,change language,none,none\n")
    (data / "test_data.csv").write_text(FSC_HEADER)
    (data / "speaker_demographics.csv").write_text("speakerId,Self-reported fluency level ,First Language spoken\n")
    return root


# ----------------------------------------------------------------------------- IEMOCAP
#: per session: (utterance suffix, category); fru is dropped, exc becomes hap.
IEMO_LINES = [("F000", "neu"), ("F001", "exc"), ("M000", "fru"), ("M001", "sad"), ("M002", "ang")]


def iemocap_id(session: int, suffix: str) -> str:
    return f"Ses0{session}F_impro01_{suffix}"


def make_iemocap(base: Path, missing: str | None = "Ses03F_impro01_M002") -> Path:
    """``base/IEMOCAP_full_release``: 5 sessions x 1 dialog x 5 lines (4 in the SUPERB classes).

    ``missing`` names a labelled utterance whose wav is not written.
    """
    root = base / "IEMOCAP_full_release"
    for s in range(1, 6):
        dialog = f"Ses0{s}F_impro01"
        session = root / f"Session{s}"
        lines = ["% [START_TIME - END_TIME] TURN_NAME EMOTION [V, A, D]", ""]
        for k, (suffix, emo) in enumerate(IEMO_LINES):
            uid = iemocap_id(s, suffix)
            lines += [f"[{k * 3.1:.4f} - {k * 3.1 + 2.5:.4f}]\t{uid}\t{emo}\t[2.5000, 2.5000, 2.5000]",
                      "C-E1:\tNeutral;\t()", "A-E1:\tval 3; act 2; dom  2;\t()", ""]
            if uid != missing:
                write_audio(session / "sentences" / "wav" / dialog / f"{uid}.wav", 0.5, seed=k)
        evaluation = session / "dialog" / "EmoEvaluation"
        (evaluation / "Categorical").mkdir(parents=True)
        (evaluation / f"{dialog}.txt").write_text("\n".join(lines) + "\n")
        (evaluation / "Categorical" / f"{dialog}_e2_cat.txt").write_text(f"{iemocap_id(s, 'F000')} :Anger; ()\n")
        (session / "dialog" / "transcriptions").mkdir(parents=True)
    return root


def write_iemocap_meta(root: Path, fold: int, pool_ids: list[str], test_ids: list[str]) -> Path:
    """s3prl's ``meta_data/Session{fold}/{train,test}_meta_data.json`` for the given ids."""
    meta = root / "meta_data" / f"Session{fold}"
    meta.mkdir(parents=True)

    def entry(uid: str) -> dict:
        session = int(uid[4])
        return {"path": f"Session{session}/sentences/wav/{uid.rsplit('_', 1)[0]}/{uid}.wav",
                "label": "neu", "speaker": uid[:6]}

    labels = {"neu": 0, "hap": 1, "ang": 2, "sad": 3}
    for name, ids in (("train_meta_data.json", pool_ids), ("test_meta_data.json", test_ids)):
        (meta / name).write_text(json.dumps({"labels": labels, "meta_data": [entry(i) for i in ids]}))
    return meta.parent


# ----------------------------------------------------------------------------- QUESST 2014
def make_quesst14(base: Path) -> Path:
    """``base/quesst14Database``: 3 documents (2 nnenglish), dev queries (1 nnenglish, 1 basque),
    1 eval query; dev has ground truth, eval has none."""
    root = base / "quesst14Database"
    for i, name in enumerate(["quesst14_00001", "quesst14_00002", "quesst14_00003"]):
        write_audio(root / "Audio" / f"{name}.wav", 1.2, seed=i)
    write_audio(root / "dev_queries" / "quesst14_dev_0001.wav", 0.4)
    write_audio(root / "dev_queries" / "quesst14_dev_0002.wav", 0.4, seed=1)
    write_audio(root / "eval_queries" / "quesst14_eval_0001.wav", 0.4, seed=2)
    scoring = root / "scoring"
    (scoring / "groundtruth_quesst14_dev").mkdir(parents=True)
    (scoring / "language_key_utterances.lst").write_text(
        "quesst14Database/Audio/quesst14_00001.wav nnenglish\n"
        "quesst14Database/Audio/quesst14_00002.wav nnenglish\n"
        "quesst14Database/Audio/quesst14_00003.wav czech\n")
    (scoring / "language_key_dev.lst").write_text(
        "quesst14Database/dev_queries/quesst14_dev_0001.wav nnenglish\n"
        "quesst14Database/dev_queries/quesst14_dev_0002.wav basque\n")
    (scoring / "language_key_eval.lst").write_text("quesst14Database/eval_queries/quesst14_eval_0001.wav nnenglish\n")
    (scoring / "groundtruth_quesst14_dev" / "quesst14_dev.rttm").write_text(
        "LEXEME quesst14_00002 1 0.310 0.520 quesst14_dev_0001 <NA> <NA> <NA>\n"
        "LEXEME quesst14_00001 1 0.100 0.400 quesst14_dev_0001 <NA> <NA> <NA>\n"
        "LEXEME quesst14_00003 1 0.100 0.400 quesst14_dev_0002 <NA> <NA> <NA>\n")
    return root


BAD_KINDS = {"garbage": "unreadable", "truncated": "unreadable", "empty": "empty", "text": "not_audio"}
N_FILES, N_EACH_BAD, N_EACH_ODD = 1000, 12, 6


def make_messy_folder(root: Path) -> dict[str, str]:
    """1,000 files: 48 bad ones (name -> expected reason), 12 odd but valid, the rest 0.1 s sine."""
    header = (write_audio(root / "template.wav", 0.1)).read_bytes()
    (root / "template.wav").unlink()
    expected: dict[str, str] = {}
    n = 0
    for kind, reason in BAD_KINDS.items():
        for _ in range(N_EACH_BAD):
            path = root / f"d{n % 7}" / f"bad_{kind}_{n:04d}.wav"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes({"garbage": os.urandom(2000), "truncated": header[:30], "empty": b"",
                              "text": b"this is a transcript, not audio\n"}[kind])
            expected[path.name] = reason
            n += 1
    for i in range(N_EACH_ODD):
        write_audio(root / "odd" / f"silent_{i}.wav", 0.3, kind="silent")
        write_audio(root / "odd" / f"stereo8k_{i}.wav", 0.25, sr=8000, channels=2)
    n += 2 * N_EACH_ODD
    for i in range(N_FILES - n):
        write_audio(root / f"d{i % 7}" / f"good_{i:04d}.{'flac' if i % 10 == 0 else 'wav'}", 0.1, seed=i)
    return expected


# ----------------------------------------------------------------------------- Audio SNIPS
#: (utterance id, line of all.iob.snips.txt after the id, wav written?)
SNIPS_LINES = [
    ("Ivy-snips-train-0", "BOS PLAY THE BEATLES ON SPOTIFY EOS\tO O artist artist O service PlayMusic", True),
    ("Salli-snips-train-1", "BOS WHAT IS THE WEATHER IN PARIS ? EOS\tO O O O O O city O GetWeather", True),
    ("Joanna-snips-train-2", "BOS PLAY ROCK & ROLL EOS\tO O genre genre genre PlayMusic", True),
    ("Ivy-snips-train-3", "BOS NO TAB HERE EOS O O O O PlayMusic", True),           # malformed: bad_entry
    ("Kendra-snips-train-4", "BOS TWO WORDS EOS\tO O PlayMusic", False),             # one tag short: bad_entry
    ("Matthew-snips-train-5", "BOS ADD IT EOS\tO O O AddToPlaylist", False),         # no wav: missing
    ("Aditi-snips-valid-0", "BOS BOOK A TABLE IN NEW YORK EOS\tO O O O O city city BookRestaurant", True),
    ("Brian-snips-test-0", "BOS RATE THIS BOOK FOUR EOS\tO O O object_type rating_value RateBook", True),
    ("Ivy-snips-test-0", "BOS RATE IT EOS\tO O O RateBook", True),                  # not a SUPERB test voice
]


def make_snips(base: Path) -> Path:
    """``base/SNIPS`` in the layout of s3prl's snips_prepare_data.sh.

    Problems built in: Ivy-snips-train-3 and Kendra-snips-train-4 are malformed lines
    (bad_entry), Matthew-snips-train-5 has no wav (missing), train/Joey-snips-train-9.wav is
    not annotated (unlabeled).  Ivy-snips-test-0 is dropped by SUPERB's speaker lists.
    """
    root = base / "SNIPS"
    root.mkdir(parents=True)
    for i, (uid, _, wav) in enumerate(SNIPS_LINES):
        if wav:
            write_audio(root / uid.split("-")[2] / f"{uid}.wav", 0.4, seed=i)
    write_audio(root / "train" / "Joey-snips-train-9.wav", 0.3)
    (root / "all.iob.snips.txt").write_text("".join(f"{uid} {rest}\n" for uid, rest, _ in SNIPS_LINES))
    (root / "slots.txt").write_text("O\nartist\nservice\ncity\ngenre\nobject_type\nrating_value")
    return root


# ----------------------------------------------------------------------------- CoVoST 2
COVOST_HEADER = "path\tsentence\ttranslation\tclient_id\n"
#: (split, line after the header, clip written?)
COVOST_LINES = (
    ("train", "common_voice_en_1.mp3\tThe dog sees the cat.\tDer Hund sieht die Katze.\tc1", True),
    ("train", "common_voice_en_2.mp3\tToday it rains.\t\u201eHeute regnet es\u201c , sagt er .\tc2", True),
    ("train", "common_voice_en_3.mp3\tNo translation column here.", True),          # bad_entry: 2 columns
    ("train", "common_voice_en_4.mp3\t\tLeerer Satz.\tc1", True),                     # bad_entry: empty sentence
    ("train", "common_voice_en_5.mp3\tA clip that is not there.\tEin fehlender Clip.\tc2", False),  # missing
    ("dev", "common_voice_en_6.mp3\tThe horse is old.\tDas Pferd ist alt.\tc3", True),
    ("dev", "common_voice_en_7.mp3\tEmpty translation.\t\tc3", True),               # bad_entry: empty translation
    ("test", "common_voice_en_8.mp3\tThe girl is tired.\tDas M\u00e4dchen ist m\u00fcde.\tc4", True),
)


def make_covost2(base: Path) -> Path:
    """``base/covost`` as s3prl's ST recipe prepares CoVoST 2 En->De: the three split TSVs next to Common Voice's
    ``en/clips`` (mp3 at 48 kHz, as Common Voice ships them).  Problems built in: see :data:`COVOST_LINES`."""
    root = base / "covost"
    for i, (split, line, clip) in enumerate(COVOST_LINES):
        tsv = root / f"covost_v2.en_de.{split}.tsv"
        if not tsv.exists():
            tsv.parent.mkdir(parents=True, exist_ok=True)
            tsv.write_text(COVOST_HEADER, encoding="utf-8")
        with open(tsv, "a", encoding="utf-8") as f:
            f.write(line + "\n")
        if clip:
            name = line.split("\t")[0]
            path = root / "en" / "clips" / name
            path.parent.mkdir(parents=True, exist_ok=True)
            t = np.arange(int(0.4 * 48_000)) / 48_000
            sf.write(str(path), (0.3 * np.sin(2 * np.pi * (200 + 30 * i) * t)).astype(np.float32), 48_000,
                     format="MP3", subtype="MPEG_LAYER_III")
    return root
