//! The quickstart's node keys and artifact digests, pinned: a refactoring
//! that changes what enters a key, or the bytes a kind writes, fails here.
//! A deliberate change bumps the kind's version (and this record) with its
//! reason in the commit.
//!
//! Recorded on an x86_64 CPU without AVX-512F (the machines this project
//! builds and tests on). The data, split and training keys hash only
//! generated data and parameters and hold everywhere; what follows training
//! hashes the trained models' bytes, which the direct AVX-512 convolution
//! computes in another summation order, so those rows are checked only
//! where the recording was made.

use crate::common::Project;
use crate::folds::small_quickstart;

/// (instance, key, artifact digest), in topological order.
const RECORDED: &[(&str, &str, &str)] = &[
    (
        "plates",
        "db3cd0bfa0b1638c9d7b372f019a5c1304da1ca0e6f092e6d9bfbb8fe65114ba",
        "0c01c9255f9b4dfa8fe81ee45f23bf94ec5f9a889a935bb43b003ff162195f4b",
    ),
    (
        "plates_test",
        "a06b9c2ddef9128b98047e6c6664470ac8b20998d21f1caf6374b6038c44bb59",
        "8bbd33ef70bdac90f9d0c31fcd8e7252529e0a6223f242e5ff326467cbdafe53",
    ),
    (
        "folds",
        "921279b2f1014de1c37fb610a6140660bb805ad185d8317fe13a90ba156889b5",
        "041e294c2af7b91e7fed28d49fe30d98755f83226ec4459cabe48d1baae4b3b9",
    ),
    (
        "cnn[0]",
        "f624aad9c34e83350f66860352cec6b59848b745084dcd570dc9538f2c287ebc",
        "893ab508419fd738139720b8577752ecd4d48fa8c814585790a4f32082b1de97",
    ),
    (
        "cnn[1]",
        "8048f70af40f9221255475f052a5c348fe10d21517680a149ddf47a4c3c7b9da",
        "175934153c85743d99b00de540f65f5bde7144976948ea652ce401120248c64a",
    ),
    (
        "cnn[2]",
        "ca518dc23dd4e4741d4b412840c259cc18e75c6226c98faf17ac2088b3ee3f33",
        "f7f7e5fcf9e6b79d868995a2c0ec59d94beb89f6a2dc8a8b1d59eefb415ca32a",
    ),
    (
        "pred",
        "a25802e10fb539a9ba8e312e47da2b7cfe43af35e0684a2a1dfd3623a4ba30c1",
        "58a8eb0c60a158dfcbd049137be3e9450e52a228b1acfbd330f563394ce4052a",
    ),
    (
        "oof[0]",
        "28264b67f5a352227ab972bf4e9583e8c95aa1a14ec19aec3743efcfcfd1e4e6",
        "5edc8cacf6783066e2c06814d9c96da0313dade27ccd173962a01ad52ac8e1b3",
    ),
    (
        "oof[1]",
        "2fe2566179d4d12535240a36fa0842498482555903bd0e85bfec544f8487ded3",
        "3738f7f49a77c483064ec28667a584d63fc27546d0a274035bc188413abe7082",
    ),
    (
        "oof[2]",
        "2e841b264fd564f7bfb7d47c42507248b3c3dfc155082fbaa2d76265b97b6c48",
        "4873a75acb1fedcd02be1bdf598e1a586554a4ab45ae7f01f0c4f40847c7eb31",
    ),
    (
        "post",
        "94ae0ee5bca5996d0521f910757bd5cfa621de4e4c74b90c2a234b2e3893dbf0",
        "079e0aadea999cd7088a09ae47247fcf0bebfbfc6762408fa9cdac1a024a54e7",
    ),
    (
        "eval",
        "0b98561df0558bfff59178fba28198829caeb88a6a270bf2f43b85795cdb03a7",
        "282d51315738fddf5d00871ac51f12854893847a367b965f97e540ab1a8aaa50",
    ),
    (
        "submission",
        "cd1403c4d5879d2c3a54857a14150b79116799a1887daef0e63351d8934a55bf",
        "2ee76f916969b1b8ab895997429f3d6ca9d6795e015c0ed68b84403f5dc6f284",
    ),
    (
        "ladder",
        "971ad4c96ff932265c2891a885203e7288d46336f891cb50ebb5bb7010fd9a6f",
        "a1315a269466f92e1e09c5b22641f5fed3cb7eba3d1003367526cfca3f6e1891",
    ),
];

/// Instances whose key and digest do not depend on trained weights.
const DATA_SIDE: &[&str] = &["plates", "plates_test", "folds"];

/// Instances whose key does not depend on trained weights (their digest,
/// the weights', does).
const TRAINED: &[&str] = &["cnn[0]", "cnn[1]", "cnn[2]"];

#[test]
fn the_quickstart_keys_and_artifacts_are_unchanged() {
    let p = Project::new(&small_quickstart());
    let report = p.run();
    assert!(report.failed().is_empty(), "{:?}", report.failed());
    let actual: Vec<(String, String, String)> = p
        .status()
        .into_iter()
        .map(|s| {
            let a = s.artifact.expect("every node ran");
            (s.instance, a.key, a.digest)
        })
        .collect();
    let listing: String = actual
        .iter()
        .map(|(i, k, d)| format!("    (\"{i}\", \"{k}\", \"{d}\"),\n"))
        .collect();
    let weights_bitwise = !std::arch::is_x86_feature_detected!("avx512f");
    assert_eq!(actual.len(), RECORDED.len(), "now:\n{listing}");
    for ((i, k, d), (ri, rk, rd)) in actual.iter().zip(RECORDED) {
        assert_eq!(i, ri, "now:\n{listing}");
        if weights_bitwise || DATA_SIDE.contains(&i.as_str()) {
            assert_eq!(
                (k.as_str(), d.as_str()),
                (*rk, *rd),
                "`{i}` changed; now:\n{listing}"
            );
        } else if TRAINED.contains(&i.as_str()) {
            assert_eq!(k, rk, "`{i}`'s key changed; now:\n{listing}");
        }
    }
    if !weights_bitwise {
        println!("note: keys downstream of training not compared (AVX-512F present)");
    }
}
