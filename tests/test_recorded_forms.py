"""Every library layer keeps its canonical hash, LaTeX, reference source and kernel source.

The stored candidates of past searches are keyed by canonical hash, exports copy the reference source,
and the kernels' golden files (tests/compiler/golden) hold the full Triton source: so a change of the
tables' layout (which module holds which backend's form of an op) must leave all of them as they were.

The values were recorded from commit 5f40d08 (before the backend forms left `ir/ops.py`) with
    for name in es.library.names():
        g = es.library.get(name)
        es.canonical_hash(g), sha256(es.latex(g)), sha256(reference.forward_source(g)),
        sha256(reference.helper_sources(g)), sha256(es.kernel_source(g))
(sha256 of the UTF-8 text, hex). Update them only with a change that means to alter these forms (and
then the stored candidates' hashes need a migration: see `symbolic.HASH_VERSION`).
"""

from __future__ import annotations

import hashlib
from typing import NamedTuple

import pytest

import evonorm_search as es
from evonorm_search import reference


class Recorded(NamedTuple):
    canonical_hash: str
    latex: str  # sha256 of the LaTeX
    forward: str  # sha256 of the reference forward source
    helpers: str  # sha256 of the helper sources an export copies
    kernel: str  # sha256 of the generated Triton source


RECORDED = {
    "bn_relu": Recorded(
        canonical_hash="b776e6b6791bde748dbf1e4e565e0092cbce49302c53612cb7c7bba891feffe7",
        latex="a8cff0202401dd584d3a7b5f8092832d9ea3af523b5b812fdd947fed07cf433c",
        forward="45cddba633fff3163ab5cdf6a722b5b7b946683f06c9f48f501db0ed635ab3bc",
        helpers="561e53fe125edad20ca1084c22c46b656add00f60c97d1ebbbf68ce58cad901b",
        kernel="8408149cb79a7c65654acfeb43642e7d4ae137832573271f537766a03a915783",
    ),
    "derf": Recorded(
        canonical_hash="113a2576d1fc5a68b01946658d5f1b978e8d9cafbc860f41ed7bdd2375f8c7eb",
        latex="b8e5a55b9f9c8f17185430c57aedb1067eb40c7df9a13d7241f275f54731776a",
        forward="85c2a878b0a56517e42c054faeb3365ca9c9ff6dc07c3c385a1aed4b917a3ec4",
        helpers="db2b7283ff08cf1d4a7e6af645278e93c104825c0e965e387ad26cdaf8c92008",
        kernel="14be8f7ea92d87d1ebe1a6dfcfc2986579606197b24d701793160816332415ee",
    ),
    "dyt": Recorded(
        canonical_hash="37c676aad323347a10dfae8a7b11d8e6d1c3a907de33636fefb7132589a9bae0",
        latex="01604007e4db9d5267607b5ffa3e56af11a74fed76c2b4d2bee399ee21325b3d",
        forward="7ca0fc658d9dde6f8e8e1669eb5e988a3f4e8dd4cf31142a68de8bb30e0258bb",
        helpers="db2b7283ff08cf1d4a7e6af645278e93c104825c0e965e387ad26cdaf8c92008",
        kernel="6ea1dd68739ecb915b57cf954f79ef7fd837555731b12931a230ffe4f0f4824b",
    ),
    "evonorm_b0": Recorded(
        canonical_hash="19c9755152c15562595bbaa724acbab9812f8aea81d1e6a1da1bed40b8706a74",
        latex="f24f77c74e4e7c8ccd83b704cb47cb3d4683b74192109395a3e85cc45ae6f6ea",
        forward="e9f378c49ca0dc496d266731313efbe5ae661da5241fa47c538fc03783383749",
        helpers="9bc80ff4ca40d3e090d44a94a6954e028f1351e5282ddf5a63cc31d3ece9969f",
        kernel="5d914f1162251aa7538ec810137ac6c92b4135e23b7866b4b8a30d8f61ca4811",
    ),
    "evonorm_b1": Recorded(
        canonical_hash="45156070ff9d4f13895bd732e8995059e0ef384730795631362482cdeb5fcbe1",
        latex="a0b2eca313e1c0aabf662d30848a5e6bf60e8d35e587dc65f1b64dec70177c8a",
        forward="b68ebf77cf1a72bf09b5eec9127de6852350a0cf1338c85a1e47ff4d6bbd2964",
        helpers="9bc80ff4ca40d3e090d44a94a6954e028f1351e5282ddf5a63cc31d3ece9969f",
        kernel="6a3d742b73c5be90d743a915b83badad49e3f0c2138a885a1d36f9da53aec26c",
    ),
    "evonorm_b2": Recorded(
        canonical_hash="d05b993b57a6c01ad311fad4a530f7575d37e7d9b8533fdd0b06f2876c32b072",
        latex="f7b058917acf0934bae6bec0c3d2f238f3c6f76cfd619d760601f75351b078dd",
        forward="40a10b287742c637e73a560ec6e4fcf59040fb3e6daa9578e8d9d1b06136bde0",
        helpers="9bc80ff4ca40d3e090d44a94a6954e028f1351e5282ddf5a63cc31d3ece9969f",
        kernel="e062e2ca8e803f36e59bf00b81707cb887a7aaee734366162cee57fc719796e5",
    ),
    "evonorm_s0": Recorded(
        canonical_hash="44824f0165c23e54917bca0bbd9f84ce64dbfd4477694d71c3e26f1f587a58cd",
        latex="14042a4e571ea39fa2b361224b66750f8399f9a908904cd3c7d4d6a086f1cbbf",
        forward="f00aaaec48c3e247343a811149184f7a0b8d34ce80fe85cdaebc48930f3f1a4a",
        helpers="f282e99c24c52832edb4320ad94f1eb9437d5e9f8d00d2603f0a249cb15f8b19",
        kernel="897da2d8bb3bc7758a93f04c89ccf055ba0b4d45c3923460cb0f768e2842a734",
    ),
    "evonorm_s1": Recorded(
        canonical_hash="891f63b0589c131f542cb39b5bff2fa31a3737ff47511b4cb73d3a9a3cc2a1f1",
        latex="2910b86ed4dc3a560ae97b51575671c91215f6931897360ab17388a7571e5aad",
        forward="5cd0fbdb652ab0388b1aa7c2baec11803194d39d1816dba1dfb925c96088811f",
        helpers="f282e99c24c52832edb4320ad94f1eb9437d5e9f8d00d2603f0a249cb15f8b19",
        kernel="6cd6f6de53a30c6dd3fcd1b82756673fd1bab4ed8aa1c99b570c4f0d7924048d",
    ),
    "evonorm_s2": Recorded(
        canonical_hash="33cc0476b33be0a06e3a613d150707af87f29e70d710b766857f55e5f5420dac",
        latex="f0f873d7068034d5b293378d43ed2067b369296607cbb248d708e64d7942e183",
        forward="0aae18a6eedae19f442a11109ef444be7108a92da24cc9d66afb9e7751f08c81",
        helpers="f282e99c24c52832edb4320ad94f1eb9437d5e9f8d00d2603f0a249cb15f8b19",
        kernel="a2cf0e7dd4d9b0888794b52a7c4648157e9a682c900358c43d867d57c6d94b5f",
    ),
    "gn_relu": Recorded(
        canonical_hash="ed7d5a6674a99a566aee8db1615d128663b87387783a66a15a91f8e0b133e577",
        latex="4902c4ada0232eeb82dcb270eee3c22b1091fa0f69b1553ee2068cd491928c5d",
        forward="31c3146d9638c375aae9c1d493e7b8a3247d8735c11c742f8046b1ad6dd4b202",
        helpers="f282e99c24c52832edb4320ad94f1eb9437d5e9f8d00d2603f0a249cb15f8b19",
        kernel="ac0d4daada24cf9c88267b57dbccb4fc63fc7edea57a75730cbc52bc65e0a0d9",
    ),
    "gn_silu": Recorded(
        canonical_hash="1fbb401974cba09d98ae78713e91af3ca1d99d1d36a293158255982e8dfc9486",
        latex="873947bfdc67d63d22dcbe68aaa3d3064546b07d16412dda5fe56d7284289ab8",
        forward="74ab414f0c7eb216b5e0a7f4e14070dc48701c39478153100aeaf95eb0e9c6f7",
        helpers="f282e99c24c52832edb4320ad94f1eb9437d5e9f8d00d2603f0a249cb15f8b19",
        kernel="c5e9d5daa4919f6e4d80f5f4140e08fc9e7cb76dc3683bcf4be6ae76e7f8b085",
    ),
    "identity": Recorded(
        canonical_hash="114cd2ef0f53dc8249cdb600bad12759add31d1d1c96e2c9e8a0acacb159ba1a",
        latex="2d711642b726b04401627ca9fbac32f5c8530fb1903cc4db02258717921a4881",
        forward="67b5142fef586d9c025c3006691c566275216b3e40dff38c8b5639154fee75d5",
        helpers="db2b7283ff08cf1d4a7e6af645278e93c104825c0e965e387ad26cdaf8c92008",
        kernel="70f2ef3c8e4a52b49bca7fb8806889a7e9c78a5275491b7a993109eacb385965",
    ),
    "in_relu": Recorded(
        canonical_hash="5285b942ecd8ec08e1a734a411d3441c1d4a1aa85cf6cedec0b603b22dcc8c39",
        latex="e4a4654d8255e9cc71ad3469e74fdec9c1ed65b5c42c20720786497126758940",
        forward="7074d9ba9ac84c0e037a231a39c99ea4fcc3a4af2bcf00d1e6f59207f447cddb",
        helpers="a4f12df123820526ac8dad260df43f69b3d052152c5ca9177fc475964d1d962c",
        kernel="d15b53bdb612c177dff4de0a7b3f99adab6978ad6bcd46e87161219a4ce592f7",
    ),
    "layernorm": Recorded(
        canonical_hash="90f5339ab22f05c4ccbc8be9973c9a3d4ea39e3e5ac9ecc9b610f041da43cb79",
        latex="cb890cd74e84fee05a95e635329533fb3f391ceed205fe97f1e04f634a7d3d0d",
        forward="f2ffdf04d8d2ba17329e05ad5467f5de9f864a9a64095ee6fdea38a898479a89",
        helpers="910a32622dfaa588fe7dadc6c542b708781d17ff478fed9591574a886fd48326",
        kernel="60907011759c7fbfe89571cff957671cef67aafdba15fe8befdd069b50f18db8",
    ),
    "layernorm_channel": Recorded(
        canonical_hash="e1f7b970a09ecb800bae68cc200e84c3f7b0880765fd165ccf42adcb97953ee3",
        latex="8d2dc4b9960163ad7f3933b76bfabf72d726314b8096f455f1def7016d6602bc",
        forward="9687f8e7e9b216cc63d3e5f64caf950b5e91c3be2e66c89e1b5ec4349c914c1e",
        helpers="b514aaca0c01518f90ca1efbdacee778cd60db384d75adb88bf67801edf6ca9f",
        kernel="6e4b8f09d1a259975d2077ce00077f1078cfbf4c8324d2ec72eb2c8bb0adc20a",
    ),
    "relu": Recorded(
        canonical_hash="040f8e147df227fff64b47a910cec3c5bccd481fce9332a7ba17f13fb19ba670",
        latex="1964f4943119aa7114b81d8c5a6e2b0968f7862c9bcfa0ff1b3b1d1c76cd933e",
        forward="46491c20683a5ce1c0b470bb0640107186293db405c87c4d1aa8c79fd05ad946",
        helpers="db2b7283ff08cf1d4a7e6af645278e93c104825c0e965e387ad26cdaf8c92008",
        kernel="9752b42e240ada4b3edeb13a14e0a0d73f1bb79d5c3b6ba6e626115cc2b2162b",
    ),
    "rmsnorm": Recorded(
        canonical_hash="5f00f26181f8014026b45384645fe5b6923c45bcc3fa7a0bb74dded1f840b838",
        latex="1f8efac7702a424fad43094e4a71f75274267597ebef29755a361ccbca87c81c",
        forward="99bbe982258114a16ff8b20d3212b1491cb4d432d5c9bb81e298d6c422579874",
        helpers="b514aaca0c01518f90ca1efbdacee778cd60db384d75adb88bf67801edf6ca9f",
        kernel="798d837a20b85fe32f8b24361dc8549f7adba90bf5b182454f589080c152d3d3",
    ),
}


def _sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def test_every_library_layer_has_a_recorded_form():
    assert sorted(RECORDED) == es.library.names()


@pytest.mark.parametrize("name", sorted(RECORDED))
def test_the_library_layer_keeps_its_hash_latex_reference_and_kernel_source(name):
    graph = es.library.get(name)
    now = Recorded(
        canonical_hash=es.canonical_hash(graph),
        latex=_sha256(es.latex(graph)),
        forward=_sha256(reference.forward_source(graph)),
        helpers=_sha256(reference.helper_sources(graph)),
        kernel=_sha256(es.kernel_source(graph)),
    )
    assert now == RECORDED[name]
