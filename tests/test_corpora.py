"""Corpus layouts: tiny copies of each published layout, and a folder of bad files."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ofactl.data.corpora import LAYOUTS, Corpus, Utterance, detect_layout, probe, read_corpus
from ofactl.data.layouts.base import finish
from ofactl.data.layouts.speech_commands import which_set
from ofactl.errors import OfactlError
from layout_fixtures import (
    IEMO_LINES, SC_FILES, SC_TEST_FILES, VOX_SPLIT, iemocap_id, make_fluent, make_iemocap, make_librispeech,
    N_FILES, make_messy_folder, make_quesst14, make_speech_commands, make_voxceleb1, write_audio,
    write_iemocap_meta,
)
from layout_fixtures import make_covost2, make_snips


def reasons(corpus: Corpus) -> dict[str, str]:
    """problem path (relative name) -> reason"""
    return {Path(p.path).name: p.reason for p in corpus.problems}


def ids(corpus: Corpus, split: str | None = None) -> set[str]:
    return {u.id for u in corpus.utterances if split is None or u.split == split}


# ----------------------------------------------------------------------------- generic
def test_generic_folder_ids_nested_and_hidden(tmp_path):
    write_audio(tmp_path / "a" / "utt1.wav")
    write_audio(tmp_path / "a" / "b" / "utt2.flac")
    write_audio(tmp_path / ".cache" / "utt3.wav")       # hidden folder: skipped
    write_audio(tmp_path / "a" / "._utt1.wav")          # macOS copy: skipped
    (tmp_path / "notes.txt").write_text("not audio")
    corpus = read_corpus(tmp_path)
    assert corpus.layout == "generic"
    assert ids(corpus) == {"utt1", "utt2"}
    assert corpus.splits() == ["all"]
    assert all(os.path.isabs(u.path) and u.duration_s is None for u in corpus)


def test_generic_duplicate_stems_are_an_error_unless_relpath(tmp_path):
    write_audio(tmp_path / "spk1" / "001.wav")
    write_audio(tmp_path / "spk2" / "001.wav")
    with pytest.raises(OfactlError) as err:
        read_corpus(tmp_path)
    assert "001" in str(err.value) and "relpath" in str(err.value)
    corpus = read_corpus(tmp_path, id_from="relpath")
    assert ids(corpus) == {"spk1/001", "spk2/001"}


def test_generic_manifest_tsv_and_csv(tmp_path):
    write_audio(tmp_path / "audio" / "a.wav", 0.5)
    absolute = write_audio(tmp_path / "elsewhere" / "b.wav", 0.5)
    (tmp_path / "m.tsv").write_text(
        "id\tpath\tsplit\toffset_s\tduration_s\tspeaker\tphones\ttext\n"
        "a\taudio/a.wav\ttrain\t\t\tspk1\tHH AH L OW\thello\n"
        f"b\t{absolute}\tdev\t0.1\t0.2\t\t\t\n"
        "c\taudio/missing.wav\ttrain\t\t\t\t\t\n"
        "a\taudio/a.wav\ttest\t\t\t\t\t\n"
        "d\taudio/a.wav\ttrain\tsoon\t\t\t\t\n")
    corpus = read_corpus(tmp_path / "m.tsv")
    by_id = {u.id: u for u in corpus}
    assert set(by_id) == {"a", "b"}
    assert by_id["a"].path == str(tmp_path / "audio" / "a.wav")
    assert by_id["a"].labels == {"speaker": "spk1", "phones": ["HH", "AH", "L", "OW"], "text": "hello"}
    assert by_id["a"].speaker == "spk1" and by_id["a"].split == "train"
    assert (by_id["b"].offset_s, by_id["b"].duration_s, by_id["b"].labels) == (0.1, 0.2, {})
    assert sorted(p.reason for p in corpus.problems) == ["bad_entry", "duplicate_id", "missing"]

    (tmp_path / "m.csv").write_text("id,path,keyword\nx,audio/a.wav,yes\n")
    corpus = read_corpus(tmp_path / "m.csv", split="all")
    assert [(u.id, u.split, dict(u.labels)) for u in corpus] == [("x", "all", {"keyword": "yes"})]


def test_generic_manifest_without_id_column_is_one_clear_error(tmp_path):
    (tmp_path / "m.csv").write_text("file,label\na.wav,yes\n")
    with pytest.raises(OfactlError, match="lacks column"):
        read_corpus(tmp_path / "m.csv")


# ----------------------------------------------------------------------------- librispeech
@pytest.mark.parametrize("where", ["LibriSpeech", "parent"])
def test_librispeech(tmp_path, where):
    root = make_librispeech(tmp_path)
    corpus = read_corpus(root if where == "LibriSpeech" else tmp_path)
    assert corpus.layout == "librispeech" and corpus.root == str(root)
    assert corpus.splits() == ["train-clean-100", "dev-clean"]
    assert ids(corpus, "dev-clean") == {"1272-128104-0000", "1272-128104-0001", "1272-128104-0002",
                                        "1462-170138-0000"}
    assert ids(corpus, "train-clean-100") == {"19-198-0000", "19-198-0001"}
    u = {u.id: u for u in corpus}
    assert u["1272-128104-0000"].labels["text"] == "MISTER QUILTER IS THE APOSTLE OF THE MIDDLE CLASSES"
    assert u["1272-128104-0000"].labels["phones"] == "M IH S T ER K W IH L T ER".split()
    assert "phones" not in u["1272-128104-0002"].labels and "phones" not in u["19-198-0000"].labels
    assert u["1272-128104-0000"].speaker == "1272"
    assert u["19-198-0001"].path == str(root / "train-clean-100/19/198/19-198-0001.flac")
    assert reasons(corpus) == {"1462-170138-0001.flac": "missing", "1462-170138-0009.flac": "unlabeled"}


def test_librispeech_one_split(tmp_path):
    root = make_librispeech(tmp_path)
    by_folder = read_corpus(root / "dev-clean")
    by_option = read_corpus(root, split="dev-clean")
    assert by_folder.splits() == by_option.splits() == ["dev-clean"]
    assert ids(by_folder) == ids(by_option) and len(by_option) == 4
    with pytest.raises(OfactlError, match="test-clean") as err:
        read_corpus(root, split="test-clean")
    assert "dev-clean" in (err.value.hint or "")


# ----------------------------------------------------------------------------- speech_commands
def test_which_set_matches_the_published_hash_rule():
    # buckets from the dataset README's which_set() (SHA-1 of the speaker, mod 2**27, as a percentage)
    assert [which_set(n) for n in ("00000000_nohash_0.wav", "00000007_nohash_3.wav", "00000002_nohash_0.wav",
                                   "00000001_nohash_0.wav", "00000004_nohash_1.wav")] == \
        ["dev", "dev", "test", "train", "train"]


@settings(max_examples=200, deadline=None)
@given(speaker=st.text("0123456789abcdef", min_size=8, max_size=8), a=st.integers(0, 9), b=st.integers(0, 9))
def test_which_set_depends_on_the_speaker_only(speaker, a, b):
    assert which_set(f"{speaker}_nohash_{a}.wav") == which_set(f"{speaker}_nohash_{b}.wav")
    assert which_set(f"{speaker}_nohash_{a}.wav") in ("train", "dev", "test")


def test_which_set_proportions_are_80_10_10():
    parts = [which_set(f"{i:08x}_nohash_0.wav") for i in range(4000)]
    assert 0.77 < parts.count("train") / 4000 < 0.83 and 0.08 < parts.count("dev") / 4000 < 0.12


def test_speech_commands(tmp_path):
    root = make_speech_commands(tmp_path)
    assert detect_layout(root) == detect_layout(tmp_path) == "speech_commands"
    corpus = read_corpus(tmp_path)
    assert corpus.root == str(root) and corpus.problems == []
    words = {k[:-4] for k, v in SC_FILES.items() if v == "train"}
    silence_train = {f"train/_background_noise_/white_noise_{a}_{b}" for a, b in
                     [(0, 16000), (16000, 32000), (32000, 40000)]} | {"train/_background_noise_/pink_noise_0_16000"}
    assert ids(corpus, "train") == words | silence_train
    assert ids(corpus, "dev") == {k[:-4] for k, v in SC_FILES.items() if v == "dev"} | {
        i.replace("train/", "dev/", 1) for i in silence_train}
    assert ids(corpus, "test") == {k[:-4] for k in SC_TEST_FILES}
    u = {u.id: u for u in corpus}
    assert u["yes/00000001_nohash_0"].labels == {"keyword": "yes", "word": "yes"}
    assert u["bed/00000004_nohash_0"].labels["keyword"] == "_unknown_"
    assert u["bed/00000000_nohash_0"].split == "dev" and u["yes/00000000_nohash_0"].split == "dev"
    assert u["yes/00000001_nohash_1"].speaker == "00000001"
    seg = u["train/_background_noise_/white_noise_32000_40000"]
    assert (seg.offset_s, seg.duration_s, seg.labels["keyword"]) == (2.0, 0.5, "_silence_")
    assert u["_silence_/silence_0001"].labels["keyword"] == "_silence_"
    assert u["_unknown_/bed_0c40e715_nohash_0"].labels["keyword"] == "_unknown_"
    assert corpus.label_counts("keyword", split="train") == {"yes": 2, "no": 1, "_unknown_": 1, "_silence_": 4}


def test_speech_commands_list_disagreeing_with_the_hash_is_reported(tmp_path):
    root = make_speech_commands(tmp_path, with_test=False)
    with open(root / "validation_list.txt", "a") as f:
        f.write("no/00000003_nohash_0.wav\n")
    corpus = read_corpus(root)
    assert "test" not in corpus.splits()
    assert [(Path(p.path).name, p.reason) for p in corpus.problems] == [("validation_list.txt", "split_mismatch")]
    assert "no/00000003_nohash_0.wav" in corpus.problems[0].detail
    assert {u.id: u.split for u in corpus}["no/00000003_nohash_0"] == "train"  # s3prl's rule wins


def test_speech_commands_without_its_test_set_names_the_archive_and_where_it_goes(tmp_path):
    """Issue 17 #15: "no split 'test'" named neither the missing folder nor where it belongs."""
    root = make_speech_commands(tmp_path, with_test=False)
    with pytest.raises(OfactlError) as err:
        read_corpus(root, split=["train", "dev", "test"])
    assert err.value.message == (f"{root}: no split 'test' in this speech_commands corpus: its test set, the "
                                 "separate archive speech_commands_test_set_v0.01.tar.gz, was not found")
    assert str(tmp_path / "speech_commands_test_set_v0.01") in err.value.hint
    with pytest.raises(OfactlError) as err:
        read_corpus(root, split="eval")  # a split the layout never has keeps the plain message
    assert err.value.message.endswith(": no split 'eval' in this speech_commands corpus")


def test_speech_commands_test_root_option(tmp_path):
    make_speech_commands(tmp_path / "a", with_test=True)
    root = make_speech_commands(tmp_path / "b", with_test=False)
    corpus = read_corpus(root, test_root=tmp_path / "a" / "speech_commands_test_set_v0.01", split="test")
    assert len(corpus) == len(SC_TEST_FILES)


# ----------------------------------------------------------------------------- voxceleb1
@pytest.mark.parametrize("s3prl_layout", [True, False])
def test_voxceleb1(tmp_path, s3prl_layout):
    root = make_voxceleb1(tmp_path, s3prl_layout)
    corpus = read_corpus(tmp_path)
    assert corpus.layout == "voxceleb1" and corpus.root == str(root)
    assert ids(corpus, "train") == {"id10001-1zcIwhmdeo4-00001", "id10001-1zcIwhmdeo4-00002",
                                    "id10270-5r0dWxy17C8-00001"}
    assert ids(corpus, "dev") == {"id10001-7w0IBEWc9Qw-00001"}
    assert ids(corpus, "test") == {"id10001-7w0IBEWc9Qw-00002", "id10270-5r0dWxy17C8-00002"}
    u = {u.id: u for u in corpus}["id10270-5r0dWxy17C8-00002"]
    assert u.labels == {"speaker": "id10270"} and u.speaker == "id10270"
    assert u.path.endswith(("test/wav/" if s3prl_layout else "wav/") + VOX_SPLIT[5][1])
    assert sorted(p.reason for p in corpus.problems) == ["bad_entry", "missing"]
    assert corpus.label_counts("speaker") == {"id10001": 4, "id10270": 2}


def test_voxceleb1_without_split_file_says_where_to_get_it(tmp_path):
    root = make_voxceleb1(tmp_path)
    (root / "iden_split.txt").rename(tmp_path / "split.txt")
    assert detect_layout(root) == "voxceleb1"
    with pytest.raises(OfactlError) as err:
        read_corpus(root)
    assert "iden_split.txt" in str(err.value) and "robots.ox.ac.uk" in str(err.value)
    # issue 17 #15: the hint named a split_file option the CLI does not have; it names what the user can do
    assert err.value.message == (f"{root} looks like VoxCeleb1 (wav/id1XXXX folders) but has no iden_split.txt, "
                                 "the official identification split")
    assert "split_file" not in err.value.hint and "--layout generic" in err.value.hint
    assert len(read_corpus(root, split_file=tmp_path / "split.txt")) == 6


# ----------------------------------------------------------------------------- fluent
def test_fluent(tmp_path):
    root = make_fluent(tmp_path)
    corpus = read_corpus(tmp_path)
    assert corpus.layout == "fluent" and corpus.root == str(root)
    assert corpus.splits() == ["train", "dev"]
    assert ids(corpus, "train") == {"0a3129c0-4474-11e9-a9a5-5dbec3b8816a", "0ee42a80-4474-11e9-a9a5-5dbec3b8816a"}
    assert ids(corpus, "dev") == {"1b3da530-4474-11e9-a9a5-5dbec3b8816a"}
    u = {u.id: u for u in corpus}["0ee42a80-4474-11e9-a9a5-5dbec3b8816a"]
    assert u.labels == {"action": "activate", "object": "lights", "location": "kitchen",
                        "text": "Turn on the lights, please"}
    assert u.speaker == "2BqVo8kVB2Skwgyb"
    assert {u.id: u for u in corpus}["0a3129c0-4474-11e9-a9a5-5dbec3b8816a"].labels["object"] == "none"
    got = {(Path(p.path).name, p.reason) for p in corpus.problems}
    assert got == {("ffffffff-4474-11e9-a9a5-5dbec3b8816a.wav", "missing"),
                   ("0a3129c0-4474-11e9-a9a5-5dbec3b8816a.wav", "duplicate_id"),
                   ("test_data.csv", "empty_split")}


# ----------------------------------------------------------------------------- iemocap
def _expected_iemocap_split(pool: list[str]) -> tuple[set[str], set[str]]:
    """What s3prl does: torch.manual_seed(0); random_split(pool, [int(0.8 n), rest])."""
    import torch
    from torch.utils.data import random_split

    n_train = int((1 - 0.2) * len(pool))
    torch.manual_seed(0)
    train, dev = random_split(pool, [n_train, len(pool) - n_train])
    return set(train), set(dev)


def test_iemocap_fold_and_classes(tmp_path):
    root = make_iemocap(tmp_path)
    corpus = read_corpus(tmp_path, fold=2)
    assert corpus.layout == "iemocap" and corpus.root == str(root)
    kept = [suffix for suffix, emo in IEMO_LINES if emo != "fru"]
    assert ids(corpus, "test") == {iemocap_id(2, s) for s in kept}
    pool = sorted(iemocap_id(s, x) for s in (1, 3, 4, 5) for x in kept)
    train, dev = _expected_iemocap_split(pool)
    train.discard("Ses03F_impro01_M002"), dev.discard("Ses03F_impro01_M002")  # its wav is missing
    assert (ids(corpus, "train"), ids(corpus, "dev")) == (train, dev)
    u = {u.id: u for u in corpus}
    assert u[iemocap_id(2, "F001")].labels == {"emotion": "hap", "session": 2}  # exc merged into hap
    assert u[iemocap_id(2, "M001")].speaker == "Ses02M"
    assert corpus.label_counts("emotion", split="test") == {"neu": 1, "hap": 1, "sad": 1, "ang": 1}
    assert [(Path(p.path).name, p.reason) for p in corpus.problems] == [("Ses03F_impro01_M002.wav", "missing")]
    assert ids(read_corpus(root, fold=5), "test") == {iemocap_id(5, s) for s in kept}


def test_iemocap_follows_s3prl_meta_order(tmp_path):
    root = make_iemocap(tmp_path, missing=None)
    kept = [suffix for suffix, emo in IEMO_LINES if emo != "fru"]
    pool = [iemocap_id(s, x) for s in (5, 2, 4, 3) for x in reversed(kept)]  # s3prl's order is not sorted
    write_iemocap_meta(root, 1, pool, [iemocap_id(1, x) for x in kept])
    corpus = read_corpus(root, fold=1)
    train, dev = _expected_iemocap_split(pool)
    assert (ids(corpus, "train"), ids(corpus, "dev")) == (train, dev)
    assert len(train) == 12 and len(dev) == 4 and len(ids(corpus, "test")) == 4


def test_iemocap_bad_fold(tmp_path):
    make_iemocap(tmp_path)
    with pytest.raises(OfactlError, match="1..5"):
        read_corpus(tmp_path, fold=6)


# ----------------------------------------------------------------------------- quesst14
def test_quesst14(tmp_path):
    root = make_quesst14(tmp_path)
    corpus = read_corpus(tmp_path)
    assert corpus.layout == "quesst14" and corpus.root == str(root)
    assert corpus.splits() == ["docs", "dev", "test"]
    assert ids(corpus, "docs") == {"quesst14_00001", "quesst14_00002"}
    u = {u.id: u for u in corpus}
    assert u["quesst14_dev_0001"].labels == {"role": "query", "language": "nnenglish",
                                             "matches": ["quesst14_00001", "quesst14_00002"]}
    assert u["quesst14_00001"].labels["role"] == "document"
    assert u["quesst14_00001"].path == str(root / "Audio" / "quesst14_00001.wav")
    assert "matches" not in u["quesst14_eval_0001"].labels  # no eval ground truth on disk
    assert corpus.problems == []
    everything = read_corpus(root, language=None)
    assert len(everything) == 6 and u.keys() < ids(everything)


# ----------------------------------------------------------------------------- Audio SNIPS
def test_snips(tmp_path):
    root = make_snips(tmp_path)
    corpus = read_corpus(tmp_path)
    assert corpus.layout == "snips" and corpus.root == str(root)
    assert corpus.splits() == ["train", "valid", "test"]
    assert ids(corpus, "train") == {"Ivy-snips-train-0", "Salli-snips-train-1", "Joanna-snips-train-2"}
    assert ids(corpus, "valid") == {"Aditi-snips-valid-0"} and ids(corpus, "test") == {"Brian-snips-test-0"}
    u = {u.id: u for u in corpus}
    assert u["Ivy-snips-train-0"].labels == {
        "words": ["PLAY", "THE", "BEATLES", "ON", "SPOTIFY"], "slots": ["O", "artist", "artist", "O", "service"],
        "intent": "PlayMusic", "text": "PLAY THE BEATLES ON SPOTIFY",
        "slot_text": "PLAY B-artist THE BEATLES E-artist ON B-service SPOTIFY E-service"}
    assert u["Ivy-snips-train-0"].speaker == "Ivy"
    assert u["Ivy-snips-train-0"].path == str(root / "train" / "Ivy-snips-train-0.wav")
    # s3prl's clean-up: punctuation tokens go with their tags, '&' is spoken as AND
    assert u["Salli-snips-train-1"].labels["slot_text"] == "WHAT IS THE WEATHER IN B-city PARIS E-city"
    assert u["Joanna-snips-train-2"].labels["slot_text"] == "PLAY B-genre ROCK AND ROLL E-genre"
    assert u["Brian-snips-test-0"].labels["slot_text"] == \
        "RATE THIS B-object_type BOOK E-object_type B-rating_value FOUR E-rating_value"
    found = sorted((p.reason, p.id) for p in corpus.problems)
    assert found == [("bad_entry", "Ivy-snips-train-3"), ("bad_entry", "Kendra-snips-train-4"),
                     ("missing", "Matthew-snips-train-5"), ("unlabeled", "Joey-snips-train-9")]
    assert any("line 4" in p.detail and "tab" in p.detail for p in corpus.problems)
    # every speaker, and one split at a time
    everything = read_corpus(root, speakers="all")
    assert ids(everything) == ids(corpus) | {"Ivy-snips-test-0"}
    assert ids(read_corpus(root, split="valid")) == {"Aditi-snips-valid-0"}
    with pytest.raises(OfactlError, match="unknown speakers option"):
        read_corpus(root, speakers="polly")


# ----------------------------------------------------------------------------- CoVoST 2
def test_covost2_reads_the_split_files_and_reports_bad_rows_by_line(tmp_path):
    root = make_covost2(tmp_path)
    corpus = read_corpus(tmp_path)
    assert corpus.layout == "covost2" and corpus.root == str(root)
    assert corpus.splits() == ["train", "dev", "test"]
    assert ids(corpus, "train") == {"common_voice_en_1", "common_voice_en_2"}
    assert ids(corpus, "dev") == {"common_voice_en_6"} and ids(corpus, "test") == {"common_voice_en_8"}
    u = {u.id: u for u in corpus}
    assert u["common_voice_en_1"].labels == {
        "sentence": "The dog sees the cat.", "translation": "Der Hund sieht die Katze.", "text": "The dog sees the cat.",
        "src_lang": "en", "tgt_lang": "de"}
    assert u["common_voice_en_1"].speaker == "c1"
    assert u["common_voice_en_8"].path == str(root / "en" / "clips" / "common_voice_en_8.mp3")
    found = sorted((p.reason, p.detail) for p in corpus.problems)
    train_tsv = "covost_v2.en_de.train.tsv"
    assert found == [
        ("bad_entry", "line 3: empty translation"),
        ("bad_entry", "line 4: 2 columns, no translation, client_id"),
        ("bad_entry", "line 5: empty sentence"),
        ("missing", f"listed in {train_tsv} line 6 but not on disk"),
    ]
    # the clips are Common Voice's 48 kHz mp3: read and resampled to 16 kHz
    from ofactl.data.audio import load_audio

    assert abs(len(load_audio(u["common_voice_en_8"].path)) - 0.4 * 16_000) < 0.1 * 16_000
    assert ids(read_corpus(root, split="dev")) == {"common_voice_en_6"}


def test_covost2_header_without_a_column_is_one_error_and_other_pairs_are_found(tmp_path):
    root = make_covost2(tmp_path)
    tsv = root / "covost_v2.en_de.dev.tsv"
    tsv.write_text("path\tsentence\tclient_id\ncommon_voice_en_6.mp3\tThe horse is old.\tc3\n")
    with pytest.raises(OfactlError, match="no translation column in the header"):
        read_corpus(root)
    # another language pair (en_ja) alone is read; en_de is preferred when both are there
    for split in ("train", "dev", "test"):
        (root / f"covost_v2.en_de.{split}.tsv").rename(root / f"covost_v2.en_ja.{split}.tsv")
    tsv = root / "covost_v2.en_ja.dev.tsv"
    tsv.write_text("path\tsentence\ttranslation\tclient_id\ncommon_voice_en_6.mp3\tThe horse.\t馬\tc3\n")
    corpus = read_corpus(root, split="dev")
    assert [u.labels["tgt_lang"] for u in corpus] == ["ja"]
    shutil_clips = root / "en" / "clips"
    shutil_clips.rename(root / "elsewhere")
    with pytest.raises(OfactlError, match="no clips folder"):
        read_corpus(root)


def test_snips_target_text_and_spans():
    from ofactl.data.layouts.snips import slot_spans, target_text

    assert slot_spans(["O", "a", "a", "b", "O", "a"]) == [(1, 2, "a"), (3, 3, "b"), (5, 5, "a")]
    assert slot_spans(["B-a", "I-a", "B-a", "O"]) == [(0, 1, "a"), (2, 2, "a")]  # IOB tags: B- starts a value
    assert target_text(["X", "Y"], ["s", "s"]) == "B-s X Y E-s"
    assert target_text(["X"], ["O"]) == "X"


# ----------------------------------------------------------------------------- detection and errors
@pytest.mark.parametrize("make, name", [
    (make_librispeech, "librispeech"), (make_speech_commands, "speech_commands"),
    (make_voxceleb1, "voxceleb1"), (make_fluent, "fluent"), (make_iemocap, "iemocap"),
    (make_quesst14, "quesst14"), (make_snips, "snips"), (make_covost2, "covost2")])
def test_detect_layout(tmp_path, make, name):
    root = make(tmp_path)
    assert detect_layout(root) == detect_layout(tmp_path) == name
    assert LAYOUTS[name].find_root(tmp_path) == root


def test_detect_nothing_lists_every_layout(tmp_path):
    (tmp_path / "readme.txt").write_text("hello")
    with pytest.raises(OfactlError) as err:
        detect_layout(tmp_path)
    text = str(err.value)
    assert all(name in text for name in LAYOUTS) and "trans.txt" in text and "iden_split.txt" in text
    with pytest.raises(OfactlError, match="no such file"):
        read_corpus(tmp_path / "nope")


def test_detect_several_corpora_asks_to_choose(tmp_path):
    make_librispeech(tmp_path)
    make_fluent(tmp_path)
    with pytest.raises(OfactlError, match="several corpora"):
        read_corpus(tmp_path)
    assert read_corpus(tmp_path, "fluent").layout == "fluent"


def test_read_corpus_rejects_unknown_layout_option_and_wrong_layout(tmp_path):
    make_fluent(tmp_path)
    with pytest.raises(OfactlError, match="unknown corpus layout"):
        read_corpus(tmp_path, "timit")
    with pytest.raises(OfactlError, match="no option fold"):
        read_corpus(tmp_path, "fluent", fold=2)
    with pytest.raises(OfactlError, match="does not look like a librispeech"):
        read_corpus(tmp_path, "librispeech")


@settings(max_examples=100, deadline=None)
@given(st.lists(st.tuples(st.sampled_from("abcde"), st.sampled_from(["train", "dev"])), max_size=20))
def test_finish_keeps_the_first_of_each_id(rows):
    utts = [Utterance(uid, f"/x/{n}.wav", part) for n, (uid, part) in enumerate(rows)]
    corpus = finish("generic", Path("/x"), utts, [])
    first = {}
    for u in utts:
        first.setdefault(u.id, u)
    assert corpus.utterances == list(first.values())
    assert len(corpus.problems) == len(utts) - len(first)
    assert all(p.reason == "duplicate_id" for p in corpus.problems)


def test_corpus_helpers(tmp_path):
    corpus = read_corpus(make_fluent(tmp_path))
    assert [u.split for u in corpus.by_split("dev")] == ["dev"]
    with pytest.raises(OfactlError, match="'test'"):
        corpus.by_split("test")
    assert corpus.label_counts("action") == {"change language": 1, "activate": 1, "increase": 1}
    assert hash(corpus.utterances[0]) == hash(corpus.utterances[0])


# ----------------------------------------------------------------------------- probe
@pytest.fixture(scope="module")
def messy_folder(tmp_path_factory) -> tuple[Path, dict[str, str]]:
    root = tmp_path_factory.mktemp("messy")
    return root, make_messy_folder(root)


def test_probe_reports_each_bad_file_and_keeps_the_rest(messy_folder):
    root, expected = messy_folder
    corpus = read_corpus(root)
    assert len(corpus) == N_FILES and corpus.problems == []
    calls: list[tuple[int, int]] = []
    probed = probe(corpus, workers=4, progress=lambda done, total, _desc: calls.append((done, total)))
    assert {Path(p.path).name: p.reason for p in probed.problems} == expected
    assert all(os.path.isabs(p.path) and p.detail and p.id == Path(p.path).stem for p in probed.problems)
    assert len(probed) == N_FILES - len(expected)
    durations = {u.id: u.duration_s for u in probed}
    assert durations["silent_0"] == pytest.approx(0.3) and durations["stereo8k_0"] == pytest.approx(0.25)
    assert all(durations[i] == pytest.approx(0.1) for i in durations if i.startswith("good_"))
    assert calls[0] == (0, N_FILES) and calls[-1] == (N_FILES, N_FILES)
    assert len(corpus.utterances) == N_FILES  # the input is not modified


def test_probe_missing_files_and_segments_outside_their_file(tmp_path):
    write_audio(tmp_path / "a.wav", 0.5)
    write_audio(tmp_path / "gone.wav", 0.5)
    (tmp_path / "m.csv").write_text(
        "id,path,offset_s,duration_s\n"
        "whole,a.wav,,\nlate,a.wav,0.6,\nlong,a.wav,0.2,0.5\nfits,a.wav,0.2,0.3\ngone,gone.wav,,\n")
    corpus = read_corpus(tmp_path / "m.csv")
    (tmp_path / "gone.wav").unlink()
    probed = probe(corpus)
    assert {u.id: u.duration_s for u in probed} == {"whole": pytest.approx(0.5), "fits": 0.3}
    assert sorted((p.id, p.reason) for p in probed.problems) == [
        ("gone", "missing"), ("late", "bad_entry"), ("long", "bad_entry")]


def test_probe_speech_commands_segments_share_one_header_read(tmp_path):
    corpus = probe(read_corpus(make_speech_commands(tmp_path)))
    assert corpus.problems == []
    segs = [u for u in corpus if "/_background_noise_/" in u.id]
    assert len(segs) == 8 and sum(u.duration_s for u in segs) == pytest.approx(2 * 3.5)
    assert all(u.duration_s == pytest.approx(1.0) for u in corpus if u not in segs)


def test_probe_bad_noise_file_drops_all_its_segments_once(tmp_path):
    root = make_speech_commands(tmp_path, with_test=False)
    corpus = read_corpus(root)
    (root / "_background_noise_" / "white_noise.wav").write_bytes(b"")
    probed = probe(corpus)
    assert [(Path(p.path).name, p.reason, p.id) for p in probed.problems] == [("white_noise.wav", "empty", None)]
    assert sum(u.labels["keyword"] == "_silence_" for u in probed) == 2


def test_utterance_is_a_plain_frozen_record():
    u = Utterance("x", "/a/x.wav", "train")
    assert (u.duration_s, u.offset_s, u.speaker, dict(u.labels)) == (None, 0.0, None, {})
    with pytest.raises(AttributeError):
        u.id = "y"  # type: ignore[misc]
