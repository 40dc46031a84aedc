//! The store's property test, run on every backend by [`crate::conformance_suite!`]: random
//! sequences of adds, batch imports, edits, removals, key writes and reference-format
//! export + import, checked step by step against a small model of what the memory must hold,
//! with the store reopened (a new handle on the same memory, as a new process) between steps.
//!
//! After every step: the outcome (done, or the kind of refusal) is the one the model predicts;
//! the store holds exactly the model's concepts (so a refused step changed nothing); names and
//! aliases are unique case-insensitively with `<brackets>` stripped, and each finds its concept
//! in any case; no image is stored that no concept uses and no key points at a missing image.
//! An export to the reference `database.json` imported into an empty tenant gives back the same
//! concepts: names, aliases, fields and reference images in order (negatives are not part of
//! that format).
//!
//! The model is written independently of [`crate::rules`] (which every backend shares), from the
//! rules as documented there, so that a change to the shared rules is caught too.
//!
//! Cases: `RAP_PROPTEST_CASES` sequences (default [`DEFAULT_CASES`], or what the backend's
//! suite sets) of up to [`MAX_STEPS`] steps; a failing sequence is shrunk to a shortest one,
//! which the panic message shows. For a longer run: `RAP_PROPTEST_CASES=500 cargo test -p
//! rap-memory store_matches` (and `-p rap-memory-postgres`).

use super::conformance::{input, t};
use crate::reference::{read_reference, write_reference};
use crate::{ConceptEdit, ConceptStore, ImageInput};
use proptest::collection::vec;
use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestError, TestRunner};
use rap_core::{Concept, Error, ImageId, NewConcept, Region, Tenant};
use rap_image::Limits;
use std::collections::{BTreeMap, BTreeSet};

/// Sequences run when `RAP_PROPTEST_CASES` is not set: small, for CI's time.
pub const DEFAULT_CASES: u32 = 12;
/// The longest sequence generated.
pub const MAX_STEPS: usize = 14;

/// Names and aliases the steps use: `(as given, key it is compared by, as displayed)`, the key
/// `None` for one the store must refuse. Several share a key, in other cases or brackets.
const NAMES: &[(&str, Option<&str>, &str)] = &[
    ("Bo", Some("bo"), "Bo"),
    ("bo", Some("bo"), "bo"),
    ("<BO>", Some("bo"), "BO"),
    ("Rex", Some("rex"), "Rex"),
    (" rex ", Some("rex"), "rex"),
    ("Mia.2", Some("mia.2"), "Mia.2"),
    ("Éclair", Some("éclair"), "Éclair"),
    ("ÉCLAIR", Some("éclair"), "ÉCLAIR"),
    ("a,b", None, "a,b"),
    ("  ", None, ""),
];

/// Distinct images the steps use (by index).
const IMAGES: u8 = 5;

const INFOS: &[&str] = &["", "<Bo> is a Shiba Inu.", "ünïcode ✓ and \"quotes\""];

#[derive(Debug, Clone)]
pub struct AddSpec {
    name: usize,
    aliases: Vec<usize>,
    images: Vec<u8>,
    info: usize,
}

#[derive(Debug, Clone)]
pub struct EditSpec {
    target: usize,
    rename: Option<usize>,
    remove_alias: Option<usize>,
    add_alias: Option<usize>,
    remove_image: Option<u8>,
    add_image: Option<u8>,
    remove_negative: Option<u8>,
    add_negative: Option<u8>,
    info: Option<usize>,
}

/// One step of a sequence.
#[derive(Debug, Clone)]
pub enum Op {
    Add(AddSpec),
    /// `add_concepts`: all or nothing.
    Import(Vec<AddSpec>),
    Edit(EditSpec),
    Remove(usize),
    /// Keys (encoder "enc") for these images, stored or not.
    PutKeys(Vec<u8>),
    /// Reference-format export, imported into a new, empty tenant.
    ExportImport,
}

fn name_ix() -> impl Strategy<Value = usize> {
    0..NAMES.len()
}

fn image_ix() -> impl Strategy<Value = u8> {
    0..IMAGES
}

fn add_spec() -> impl Strategy<Value = AddSpec> {
    (
        name_ix(),
        vec(name_ix(), 0..=2),
        vec(image_ix(), 0..=3),
        0..INFOS.len(),
    )
        .prop_map(|(name, aliases, images, info)| AddSpec {
            name,
            aliases,
            images,
            info,
        })
}

fn edit_spec() -> impl Strategy<Value = EditSpec> {
    use proptest::option::weighted;
    (
        name_ix(),
        weighted(0.3, name_ix()),
        weighted(0.3, name_ix()),
        weighted(0.3, name_ix()),
        weighted(0.3, image_ix()),
        weighted(0.3, image_ix()),
        weighted(0.2, image_ix()),
        weighted(0.3, image_ix()),
        weighted(0.3, 0..INFOS.len()),
    )
        .prop_map(
            |(
                target,
                rename,
                remove_alias,
                add_alias,
                remove_image,
                add_image,
                remove_negative,
                add_negative,
                info,
            )| EditSpec {
                target,
                rename,
                remove_alias,
                add_alias,
                remove_image,
                add_image,
                remove_negative,
                add_negative,
                info,
            },
        )
}

pub fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => add_spec().prop_map(Op::Add),
        1 => vec(add_spec(), 1..=3).prop_map(Op::Import),
        5 => edit_spec().prop_map(Op::Edit),
        1 => name_ix().prop_map(Op::Remove),
        1 => vec(image_ix(), 1..=3).prop_map(Op::PutKeys),
        1 => Just(Op::ExportImport),
    ]
}

/// What a step came to: done, or the kind of refusal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    Done,
    Invalid,
    NotFound,
    Conflict,
}

fn outcome<T>(result: &Result<T, Error>) -> std::result::Result<Outcome, String> {
    match result {
        Ok(_) => Ok(Outcome::Done),
        Err(Error::InvalidInput(_)) => Ok(Outcome::Invalid),
        Err(Error::NotFound { .. }) => Ok(Outcome::NotFound),
        Err(Error::Conflict(_)) => Ok(Outcome::Conflict),
        Err(e) => Err(format!("unexpected error kind: {e}")),
    }
}

#[derive(Debug, Clone)]
struct ModelConcept {
    key: String,
    name: String,
    /// `(key, display)`.
    aliases: Vec<(String, String)>,
    info: String,
    images: Vec<u8>,
    negatives: Vec<u8>,
}

impl ModelConcept {
    fn has_key(&self, key: &str) -> bool {
        self.key == key || self.aliases.iter().any(|(k, _)| k == key)
    }
}

#[derive(Debug, Clone, Default)]
struct Model {
    concepts: Vec<ModelConcept>,
    /// Images with a key for encoder "enc".
    keyed: BTreeSet<u8>,
}

const CATEGORY: &str = "dog";

impl Model {
    fn find(&self, given: usize) -> Option<usize> {
        let key = NAMES[given].1?;
        self.concepts.iter().position(|c| c.has_key(key))
    }

    /// The images some concept uses, as a reference or a negative.
    fn live(&self) -> BTreeSet<u8> {
        self.concepts
            .iter()
            .flat_map(|c| c.images.iter().chain(&c.negatives).copied())
            .collect()
    }

    fn collect_keys(&mut self) {
        let live = self.live();
        self.keyed.retain(|i| live.contains(i));
    }

    fn add(&mut self, spec: &AddSpec) -> Outcome {
        if spec.images.is_empty() {
            return Outcome::Invalid;
        }
        let mut own: Vec<&str> = Vec::new();
        for &given in std::iter::once(&spec.name).chain(&spec.aliases) {
            let Some(key) = NAMES[given].1 else {
                return Outcome::Invalid;
            };
            if own.contains(&key) || self.concepts.iter().any(|c| c.has_key(key)) {
                return Outcome::Conflict;
            }
            own.push(key);
        }
        let mut images = Vec::new();
        for &i in &spec.images {
            if !images.contains(&i) {
                images.push(i);
            }
        }
        let (_, key, name) = NAMES[spec.name];
        self.concepts.push(ModelConcept {
            key: key.unwrap().to_owned(),
            name: name.to_owned(),
            aliases: spec
                .aliases
                .iter()
                .map(|&a| (NAMES[a].1.unwrap().to_owned(), NAMES[a].2.to_owned()))
                .collect(),
            info: INFOS[spec.info].to_owned(),
            images,
            negatives: Vec::new(),
        });
        Outcome::Done
    }

    fn import(&mut self, specs: &[AddSpec]) -> Outcome {
        let mut after = self.clone();
        for spec in specs {
            let outcome = after.add(spec);
            if outcome != Outcome::Done {
                return outcome;
            }
        }
        *self = after;
        Outcome::Done
    }

    /// The edit, checked in the documented order (see [`crate::rules::plan_edit`]).
    fn edit(&mut self, e: &EditSpec) -> Outcome {
        let Some(at) = self.find(e.target) else {
            return Outcome::NotFound;
        };
        let held_by_other = |key: &str| {
            self.concepts
                .iter()
                .enumerate()
                .any(|(i, c)| i != at && c.has_key(key))
        };
        let mut c = self.concepts[at].clone();
        if let Some(given) = e.rename {
            let Some(key) = NAMES[given].1 else {
                return Outcome::Invalid;
            };
            if held_by_other(key) {
                return Outcome::Conflict;
            }
            // Renaming to one of its own aliases turns that alias into the name.
            c.aliases.retain(|(k, _)| k != key);
            c.key = key.to_owned();
            c.name = NAMES[given].2.to_owned();
        }
        if let Some(given) = e.remove_alias {
            let Some(key) = NAMES[given].1 else {
                return Outcome::Invalid;
            };
            let Some(pos) = c.aliases.iter().position(|(k, _)| k == key) else {
                return Outcome::NotFound;
            };
            c.aliases.remove(pos);
        }
        if let Some(given) = e.add_alias {
            let Some(key) = NAMES[given].1 else {
                return Outcome::Invalid;
            };
            if held_by_other(key) || c.has_key(key) {
                return Outcome::Conflict;
            }
            c.aliases.push((key.to_owned(), NAMES[given].2.to_owned()));
        }
        if let Some(image) = e.remove_image {
            let Some(pos) = c.images.iter().position(|&i| i == image) else {
                return Outcome::NotFound;
            };
            c.images.remove(pos);
        }
        if let Some(image) = e.add_image {
            if c.images.contains(&image) {
                return Outcome::Conflict;
            }
            c.images.push(image);
        }
        if let Some(image) = e.remove_negative {
            let Some(pos) = c.negatives.iter().position(|&i| i == image) else {
                return Outcome::NotFound;
            };
            c.negatives.remove(pos);
        }
        if let Some(image) = e.add_negative {
            if c.negatives.contains(&image) || c.images.contains(&image) {
                return Outcome::Conflict;
            }
            c.negatives.push(image);
        }
        if e.add_image.is_some_and(|i| c.negatives.contains(&i)) {
            return Outcome::Conflict;
        }
        if c.images.is_empty() {
            return Outcome::Invalid;
        }
        if let Some(info) = e.info {
            c.info = INFOS[info].to_owned();
        }
        self.concepts[at] = c;
        self.collect_keys();
        Outcome::Done
    }

    fn remove(&mut self, given: usize) -> Outcome {
        let Some(at) = self.find(given) else {
            return Outcome::NotFound;
        };
        self.concepts.remove(at);
        self.collect_keys();
        Outcome::Done
    }
}

/// A concept as compared: display name, aliases (sorted), fields, images and negatives in order.
type Form = (
    String,
    Vec<String>,
    String,
    String,
    Vec<ImageId>,
    Vec<ImageId>,
);

fn form_of_store(c: &Concept) -> Form {
    let mut aliases = c.aliases.clone();
    aliases.sort();
    (
        c.name.clone(),
        aliases,
        c.category.clone(),
        c.info.clone(),
        c.images.iter().map(|i| i.id.clone()).collect(),
        c.negatives.iter().map(|i| i.id.clone()).collect(),
    )
}

/// Every form, by the name's key.
fn forms_of_store(concepts: &[Concept]) -> BTreeMap<String, Form> {
    concepts
        .iter()
        .map(|c| (c.name.to_lowercase(), form_of_store(c)))
        .collect()
}

struct Run<'a> {
    images: &'a [ImageInput],
    tenant: Tenant,
    model: Model,
    exports: u32,
}

type Step = std::result::Result<(), TestCaseError>;

fn fail(message: String) -> TestCaseError {
    TestCaseError::fail(message)
}

impl Run<'_> {
    fn id(&self, i: u8) -> ImageId {
        self.images[i as usize].id.clone()
    }

    fn input(&self, i: u8) -> ImageInput {
        self.images[i as usize].clone()
    }

    fn new_concept(&self, spec: &AddSpec) -> (NewConcept, Vec<ImageInput>) {
        (
            NewConcept {
                name: NAMES[spec.name].0.to_owned(),
                aliases: spec
                    .aliases
                    .iter()
                    .map(|&a| NAMES[a].0.to_owned())
                    .collect(),
                category: CATEGORY.to_owned(),
                info: INFOS[spec.info].to_owned(),
            },
            spec.images.iter().map(|&i| self.input(i)).collect(),
        )
    }

    fn model_forms(&self, with_negatives: bool) -> BTreeMap<String, Form> {
        self.model
            .concepts
            .iter()
            .map(|c| {
                let mut aliases: Vec<String> = c.aliases.iter().map(|(_, d)| d.clone()).collect();
                aliases.sort();
                let negatives = if with_negatives {
                    c.negatives.iter().map(|&i| self.id(i)).collect()
                } else {
                    Vec::new()
                };
                let form = (
                    c.name.clone(),
                    aliases,
                    CATEGORY.to_owned(),
                    c.info.clone(),
                    c.images.iter().map(|&i| self.id(i)).collect(),
                    negatives,
                );
                (c.name.to_lowercase(), form)
            })
            .collect()
    }

    /// Carries out one step on the store and the model; checks that both came to the same.
    fn step(&mut self, store: &dyn ConceptStore, op: &Op) -> Step {
        let tenant = &self.tenant;
        let (got, want) = match op {
            Op::Add(spec) => {
                let (new, images) = self.new_concept(spec);
                let got = outcome(&store.add_concept(tenant, &new, images)).map_err(fail)?;
                (got, self.model.add(spec))
            }
            Op::Import(specs) => {
                let batch = specs.iter().map(|s| self.new_concept(s)).collect();
                let got = outcome(&store.add_concepts(tenant, batch)).map_err(fail)?;
                (got, self.model.import(specs))
            }
            Op::Edit(e) => {
                let full = |i: Option<u8>| i.map(|i| self.id(i).0).into_iter().collect();
                let edit = ConceptEdit {
                    rename: e.rename.map(|n| NAMES[n].0.to_owned()),
                    info: e.info.map(|i| INFOS[i].to_owned()),
                    category: None,
                    add_images: e.add_image.map(|i| self.input(i)).into_iter().collect(),
                    remove_images: full(e.remove_image),
                    add_aliases: e
                        .add_alias
                        .map(|n| NAMES[n].0.to_owned())
                        .into_iter()
                        .collect(),
                    remove_aliases: e
                        .remove_alias
                        .map(|n| NAMES[n].0.to_owned())
                        .into_iter()
                        .collect(),
                    add_negatives: e.add_negative.map(|i| self.input(i)).into_iter().collect(),
                    remove_negatives: full(e.remove_negative),
                };
                let got =
                    outcome(&store.edit_concept(tenant, NAMES[e.target].0, edit)).map_err(fail)?;
                (got, self.model.edit(e))
            }
            Op::Remove(given) => {
                let got = outcome(&store.remove_concept(tenant, NAMES[*given].0)).map_err(fail)?;
                (got, self.model.remove(*given))
            }
            Op::PutKeys(images) => {
                let keys: Vec<_> = images
                    .iter()
                    .enumerate()
                    .map(|(n, &i)| {
                        let mut v = vec![0.0; 8];
                        v[(i as usize + n) % 8] = 1.0;
                        let embedding = rap_core::Embedding::normalized(v).unwrap();
                        (self.id(i), Region::whole(16, 12), embedding)
                    })
                    .collect();
                let got = outcome(&store.put_keys(tenant, "enc", &keys)).map_err(fail)?;
                // Images deleted (or never stored) are skipped.
                let live = self.model.live();
                self.model
                    .keyed
                    .extend(images.iter().filter(|i| live.contains(i)));
                (got, Outcome::Done)
            }
            Op::ExportImport => {
                self.export_import(store)?;
                (Outcome::Done, Outcome::Done)
            }
        };
        prop_assert_eq!(got, want, "outcome of {:?}", op);
        Ok(())
    }

    fn export_import(&mut self, store: &dyn ConceptStore) -> Step {
        let tenant = &self.tenant;
        let dir = tempfile::tempdir().map_err(|e| fail(e.to_string()))?;
        let out = dir.path().join("export");
        let concepts = store.concepts(tenant).map_err(|e| fail(e.to_string()))?;
        write_reference(&out, &concepts, false, |c, i| {
            store.image_bytes(tenant, &c.images[i].id)
        })
        .map_err(|e| fail(format!("export: {e}")))?;
        let read = read_reference(&out, &Limits::default())
            .map_err(|e| fail(format!("reading the export: {e}")))?;
        self.exports += 1;
        let copy = t(&format!("copy{}", self.exports));
        store
            .add_concepts(&copy, read)
            .map_err(|e| fail(format!("importing the export: {e}")))?;
        let back = store.concepts(&copy).map_err(|e| fail(e.to_string()))?;
        prop_assert_eq!(
            forms_of_store(&back),
            self.model_forms(false),
            "export then import is not the identity"
        );
        Ok(())
    }

    /// Checks everything the store holds for the tenant against the model.
    fn check(&self, store: &dyn ConceptStore) -> Step {
        let tenant = &self.tenant;
        let err = |e: Error| fail(e.to_string());
        let concepts = store.concepts(tenant).map_err(err)?;
        prop_assert_eq!(forms_of_store(&concepts), self.model_forms(true));

        // Names and aliases: unique by key, and each finds its concept in any case.
        let mut keys = BTreeSet::new();
        for c in &concepts {
            for given in std::iter::once(&c.name).chain(&c.aliases) {
                let key = given.to_lowercase();
                prop_assert!(keys.insert(key.clone()), "{given:?} is held twice");
                for asked in [given.to_uppercase(), format!("<{key}>")] {
                    let found = store.concept(tenant, &asked).map_err(err)?;
                    prop_assert_eq!(&found.id, &c.id, "{:?} finds another concept", asked);
                }
            }
        }

        // Images: exactly those some concept uses, with their bytes; keys only on them.
        let live = self.model.live();
        let stats = store.stats(tenant).map_err(err)?;
        prop_assert_eq!(stats.concepts, self.model.concepts.len() as u64);
        prop_assert_eq!(stats.images, live.len() as u64, "stored images");
        prop_assert_eq!(
            stats.embeddings,
            self.model.keyed.len() as u64,
            "stored keys"
        );
        for i in 0..IMAGES {
            let bytes = store.image_bytes(tenant, &self.id(i));
            if live.contains(&i) {
                prop_assert_eq!(&bytes.map_err(err)?[..], &self.images[i as usize].bytes[..]);
            } else {
                prop_assert!(
                    matches!(bytes, Err(Error::NotFound { .. })),
                    "image {i} is used by no concept but still stored"
                );
            }
        }
        let keyed: BTreeSet<ImageId> = store
            .keys(tenant, "enc")
            .map_err(err)?
            .into_iter()
            .map(|k| k.image)
            .collect();
        let want: BTreeSet<ImageId> = self.model.keyed.iter().map(|&i| self.id(i)).collect();
        prop_assert_eq!(keyed, want, "images with keys");
        let unkeyed: BTreeSet<ImageId> = store
            .images_without_keys(tenant, "enc")
            .map_err(err)?
            .into_iter()
            .collect();
        let want: BTreeSet<ImageId> = live
            .difference(&self.model.keyed)
            .map(|&i| self.id(i))
            .collect();
        prop_assert_eq!(unkeyed, want, "images without keys");
        Ok(())
    }
}

fn cases(default: u32) -> u32 {
    std::env::var("RAP_PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// The property: any sequence of steps leaves the store as the model says. `open` gives a fresh,
/// empty store with its guard; `again` a new handle on the same memory. `default_cases`
/// sequences are run unless `RAP_PROPTEST_CASES` says otherwise.
pub fn store_matches_a_model_through_any_sequence<G, S: ConceptStore>(
    default_cases: u32,
    open: impl Fn() -> (G, S),
    again: impl Fn(&G) -> S,
) {
    let images: Vec<ImageInput> = (0..IMAGES).map(|i| input(i * 40 + 1)).collect();
    let config = Config {
        cases: cases(default_cases),
        failure_persistence: None,
        ..Config::default()
    };
    let mut runner = TestRunner::new(config);
    let result = runner.run(&vec(op(), 1..=MAX_STEPS), |ops| {
        let (guard, mut store) = open();
        let mut run = Run {
            images: &images,
            tenant: t("prop"),
            model: Model::default(),
            exports: 0,
        };
        for (n, op) in ops.iter().enumerate() {
            run.step(&store, op)
                .map_err(|e| fail(format!("step {n} {op:?}: {e}")))?;
            // A new handle, as the next process would open it.
            drop(store);
            store = again(&guard);
            run.check(&store)
                .map_err(|e| fail(format!("after step {n} {op:?}: {e}")))?;
        }
        Ok(())
    });
    match result {
        Ok(()) => {}
        Err(TestError::Fail(reason, ops)) => {
            panic!("{reason}\nshortest failing sequence: {ops:#?}")
        }
        Err(e) => panic!("{e}"),
    }
}
