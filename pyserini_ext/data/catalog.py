"""The registered datasets: BEIR v1.0.0, MS MARCO v1 passage, CACM; DL-Typo's query files.

Sources and checksums:

- BEIR corpora, queries and non-test qrels: the official zips,
  ``https://public.ukp.informatik.tu-darmstadt.de/thakur/BEIR/datasets/<name>.zip``, with the MD5s
  of the dataset table in the BEIR repository's README (the same values ir_datasets pins).
  CQADupStack is one zip with a folder per forum. Each zip unpacks into ``beir/<name>/`` under
  the data root (``beir/cqadupstack/<forum>/``).
- BEIR test splits: Anserini's (Pyserini's) files ``topics.beir-v1.0.0-<name>.test.tsv.gz`` and
  ``qrels.beir-v1.0.0-<name>.test.txt`` from anserini-tools, under ``topics-and-qrels/``. Their
  MD5s are recorded where we hold a copy; for the others no checksum is recorded and only
  the zip (corpus) is verified. BEIR's own msmarco has no such files: its test split (TREC DL
  2019) comes from the zip. Pyserini's names (``beir-v1.0.0-<name>-test``) are topic sets.
- MS MARCO v1 passage: ``collectionandqueries.tar.gz`` (MD5 31644046b18952c1386cd4564ba2ae69)
  holds ``collection.tsv`` (pid<TAB>text), unpacked into ``msmarco-v1-passage/``; the dev subset,
  DL19 and DL20 topics and qrels are Anserini's files.
"""

from __future__ import annotations

from pyserini_ext.data.dataset import Dataset, Split
from pyserini_ext.data.sources import LocalFile, Remote
from pyserini_ext.registry import Registry

ANSERINI_TOOLS = "https://raw.githubusercontent.com/castorini/anserini-tools/master/topics-and-qrels/"
BEIR_URL = "https://public.ukp.informatik.tu-darmstadt.de/thakur/BEIR/datasets/{}.zip"

# name -> (zip MD5 from the BEIR README's dataset table, the qrels/<split>.tsv files the zip holds)
BEIR = {
    "msmarco": ("444067daf65d982533ea17ebd59501e4", ("train", "dev", "test")),
    "trec-covid": ("ce62140cb23feb9becf6270d0d1fe6d1", ("test",)),
    "nfcorpus": ("a89dba18a62ef92f7d323ec890a0d38d", ("train", "dev", "test")),
    "nq": ("d4d3d2e48787a744b6f6e691ff534307", ("test",)),
    "hotpotqa": ("f412724f78b0d91183a0e86805e16114", ("train", "dev", "test")),
    "fiqa": ("17918ed23cd04fb15047f73e6c3bd9d9", ("train", "dev", "test")),
    "arguana": ("8ad3e3c2a5867cdced806d6503f29b99", ("test",)),
    "webis-touche2020": ("46f650ba5a527fc69e0a6521c5a23563", ("test",)),
    "quora": ("18fb154900ba42a600f84b839c173167", ("dev", "test")),
    "dbpedia-entity": ("c2a39eb420a3164af735795df012ac2c", ("dev", "test")),
    "scidocs": ("38121350fc3a4d2f48850f6aff52e4a9", ("test",)),
    "fever": ("5a818580227bfb4b35bb6fa46d9b6c03", ("train", "dev", "test")),
    "climate-fever": ("8b66f0a9126c521bae2bde127b4dc99d", ("test",)),
    "scifact": ("5f7d1de60b170fc8027bb7898e2efca1", ("train", "test")),
}
CQADUPSTACK_MD5 = "4e41456d7df8ee7760a7f866133bda78"
CQADUPSTACK_FORUMS = ("android", "english", "gaming", "gis", "mathematica", "physics", "programmers", "stats",
                      "tex", "unix", "webmasters", "wordpress")

# MD5s of Anserini's BEIR test files (topics .tsv.gz, qrels .txt), measured on our copies.
# Datasets missing here have no checksum recorded: those two files are downloaded unverified.
ANSERINI_BEIR_TEST_MD5 = {
    "arguana": ("4e7b6632abc1c03e4b58d060aceac07e", "e9c3f39dc14cf155bc07b5c592420240"),
    "fiqa": ("0b2b3c600f5de0ce97596000e4242f4e", "c69eb1b89ec8b2b992ad03ef530a8758"),
    "nfcorpus": ("e5f65f104c00f97742a50975dc06ecb8", "d0655f2827d0355f62b1e0f7a30f0254"),
    "quora": ("891354a1476fc0a865f1e5f071e125ff", "6ff7d707318942594ab7c8680bd5209c"),
    "scidocs": ("5256b06aef0410c59187def917cbb5a1", "57868cf7b55b50b20610914848fad34d"),
    "scifact": ("e2caa31d00a1e256daae18de39576660", "2edf8f4c5cb2ebf9f4fd9a0b9a389133"),
    "trec-covid": ("e316b704be9e375ed05ad2ebaa56cf22", "1e130db6fb3f9c217a17b024cb5381be"),
    "webis-touche2020": ("4519b318ad02ba55abc4926e4d8f5c34", "93d6053c39f1da5b7ce0a23839b3ded5"),
}

# Files whose own MD5 we know (checked after download, on top of the archive's).
_SCIFACT_FILES = {
    "corpus.jsonl": "26537f8ae036fdb77d847ec4f7ac1858",
    "queries.jsonl": "846a4365aec1857489dd3dbc130f2c2e",
    "qrels/train.tsv": "345740844326320ff73e594322b51034",
}


def anserini_tools(name: str, md5: str | None) -> LocalFile:
    """A topics/qrels file of anserini-tools, under ``topics-and-qrels/`` (md5 None: not verified)."""
    return LocalFile(f"topics-and-qrels/{name}", md5, Remote(ANSERINI_TOOLS + name, md5))


def beir_dataset(name: str, zip_name: str, md5: str, splits: tuple[str, ...]) -> Dataset:
    """``beir/<name>``: files under ``beir/<name>/``, from the folder ``<zip_name>/`` of ``<zip_name>.zip``
    (unpacked into ``beir/<zip_name>/``)."""
    root = f"beir/{name}"
    remote = Remote(BEIR_URL.format(zip_name), md5, zip_folder=zip_name, unpack_to=f"beir/{zip_name}")
    known = _SCIFACT_FILES if name == "scifact" else {}

    def member(relpath: str) -> LocalFile:
        return LocalFile(f"{root}/{relpath}", known.get(relpath), remote)

    pyserini = name.replace("/", "-")  # cqadupstack/android -> cqadupstack-android
    built: dict[str, Split] = {}
    for split in splits:
        if split == "test" and name != "msmarco":
            topics_md5, qrels_md5 = ANSERINI_BEIR_TEST_MD5.get(name, (None, None))
            built[split] = Split(anserini_tools(f"topics.beir-v1.0.0-{pyserini}.test.tsv.gz", topics_md5),
                                 anserini_tools(f"qrels.beir-v1.0.0-{pyserini}.test.txt", qrels_md5))
        else:
            # queries.jsonl holds every split's queries: keep those judged in this split. SciFact's
            # train split keeps all of them, as it always has here (its judged ones are a subset).
            built[split] = Split(member("queries.jsonl"), member(f"qrels/{split}.tsv"),
                                 judged_only=name != "scifact")
    topic_sets = {f"beir-v1.0.0-{pyserini}-test": "test"} if name != "msmarco" else {}
    return Dataset(
        name=f"beir/{name}", corpus=member("corpus.jsonl"), layout="beir", splits=built,
        description=f"BEIR v1.0.0 {name}", remove_query=True, topic_sets=topic_sets,
    )


MSMARCO_COLLECTION = Remote(
    "https://msmarco.z22.web.core.windows.net/msmarcoranking/collectionandqueries.tar.gz",
    "31644046b18952c1386cd4564ba2ae69", zip_folder="", unpack_to="msmarco-v1-passage",
    headers=(("X-Ms-Version", "2019-12-12"),),  # the Azure storage API version ir_datasets also sends
)


def msmarco_v1_passage() -> Dataset:
    return Dataset(
        name="msmarco-v1-passage",
        # No MD5 of collection.tsv itself is recorded: the archive's is checked.
        corpus=LocalFile("msmarco-v1-passage/collection.tsv", None, MSMARCO_COLLECTION),
        layout="tsv",
        splits={
            "dev-subset": Split(
                anserini_tools("topics.msmarco-passage.dev-subset.txt", "4621c583f1089d223db228a4f95a05d1"),
                anserini_tools("qrels.msmarco-passage.dev-subset.txt", "521ff630abe77a3e120417565ff025f1")),
            # TREC DL: graded judgements; binary metrics (MAP, R@k) count grade >= 2.
            "dl19": Split(anserini_tools("topics.dl19-passage.txt", "c83e3dda130c7a191357b0287d854ddb"),
                          anserini_tools("qrels.dl19-passage.txt", "2f4be390198da108f6845c822e5ada14"),
                          relevance_level=2),
            "dl20": Split(anserini_tools("topics.dl20.txt", "52cf21f50b4842233d35933cbc26b179"),
                          anserini_tools("qrels.dl20-passage.txt", "0355ccee7509ac0463e8278186cdd8d1"),
                          relevance_level=2),
        },
        description="MS MARCO v1 passage (8.8M passages)",
        topic_sets={"msmarco-passage-dev-subset": "dev-subset", "dl19-passage": "dl19",
                    "dl20-passage": "dl20", "dl20": "dl20"},
    )


def cacm() -> Dataset:
    return Dataset(
        name="cacm",
        corpus=LocalFile(
            "cacm/cacm.json", "f3f6e6964ed0e2f363427d36c23f2273",
            how_to_get="no public download of this file is known; take cacm.json (Pyserini's JsonCollection of "
                       "Anserini's CACM test collection, MD5 f3f6e6964ed0e2f363427d36c23f2273) from a copy you have",
        ),
        layout="jsonl",
        splits={"all": (anserini_tools("topics.cacm.txt", "ae531228463a8d4950b08205f16a9eff"),
                        anserini_tools("qrels.cacm.txt", "af133287de3f09af60eb9081d0fd4c9b"))},
        description="CACM test collection",
        topic_sets={"cacm": "all"},
    )


def register_all(registry: Registry[Dataset]) -> None:
    for name, (md5, splits) in BEIR.items():
        registry.register(f"beir/{name}", beir_dataset(name, name, md5, splits))
    for forum in CQADUPSTACK_FORUMS:
        registry.register(f"beir/cqadupstack/{forum}",
                          beir_dataset(f"cqadupstack/{forum}", "cqadupstack", CQADUPSTACK_MD5, ("test",)))
    registry.register("msmarco-v1-passage", msmarco_v1_passage())
    registry.register("cacm", cacm())


# DL-Typo (Zhuang & Zuccon, SIGIR 2022): 60 MS MARCO passage queries, each with a real typo
# (query.typo.tsv) and its corrected form (query.tsv), same qids. Queries only: there is no corpus.
_DL_TYPO = ("https://raw.githubusercontent.com/ielab/CharacterBERT-DR/"
            "940de8a09695fc1a6f685920464a229913c4c2ab/data/dl-typo/")


def _dl_typo(name: str, md5: str) -> LocalFile:
    return LocalFile(f"dl-typo/{name}", md5, Remote(_DL_TYPO + name, md5))


DL_TYPO_CLEAN = _dl_typo("query.tsv", "6429a9fa1b11192ebe3f11a4c8c8bff4")
DL_TYPO_TYPO = _dl_typo("query.typo.tsv", "257cea68424636be9fc3275688112c53")
