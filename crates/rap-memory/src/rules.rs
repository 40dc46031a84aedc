//! The rules every store backend keeps, written once as pure functions over plain data.
//!
//! A backend reads what it holds (a concept, the names and aliases a change could clash
//! with), asks a function here for a plan or a typed error, and only then writes the plan in
//! its own SQL, inside the same transaction (the pattern of [`crate::api_keys::plan_import`]).
//! So the embedded and the PostgreSQL store cannot drift apart on what is allowed, in which
//! order failures are reported, or what the messages say:
//! - [`NameClaim`], [`plan_add`], [`plan_edit`]: names and aliases share one namespace per
//!   tenant (their [`normalize_name_key`] form); a clash is [`Error::Conflict`] naming the owner;
//!   a concept has at least one reference image.
//! - [`resolve_image`], [`lookup_key`]: what a caller may call an image or a concept.
//! - [`region_to_text`] / [`parse_region`]: how a region is stored (its JSON text, which is
//!   also how stores tell two regions apart).
//! - [`check_setting`]: what a tenant setting may be.
//! - [`database_error`]: the one mapping of a database's error (a unique violation is a
//!   conflict, anything else a storage failure that keeps its source).

use crate::store::{ConceptEdit, ImageInput};
use rap_core::{
    normalize_name_key, strip_brackets, Concept, ConceptId, ConceptImage, Error, ImageId,
    NewConcept, Region, Result,
};
use std::collections::{BTreeMap, HashMap, HashSet};

/// Unix time in milliseconds (0 on a clock before 1970).
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// The first 12 characters of an image id, as messages show it.
pub fn short_id(id: &ImageId) -> &str {
    id.0.get(..12).unwrap_or(&id.0)
}

/// A region as stored: its JSON text.
pub fn region_to_text(region: &Region) -> Result<String> {
    serde_json::to_string(region).map_err(|e| Error::storage(e.to_string()))
}

/// A stored region of key `key` read back.
pub fn parse_region(key: u64, region: &str) -> Result<Region> {
    serde_json::from_str(region)
        .map_err(|e| Error::storage(format!("stored region of key {key}: {e}")))
}

/// How both stores report a database error: a unique violation is [`Error::Conflict`] with
/// the database's `message`; anything else is [`Error::Storage`] keeping `source`.
pub fn database_error(
    message: String,
    unique_violation: bool,
    source: impl std::error::Error + Send + Sync + 'static,
) -> Error {
    if unique_violation {
        Error::Conflict(message)
    } else {
        Error::Storage {
            message,
            source: Some(Box::new(source)),
        }
    }
}

/// The key a concept is looked up by; a name that could not be stored is simply not found.
pub fn lookup_key(name_or_alias: &str) -> Result<String> {
    normalize_name_key(name_or_alias).map_err(|_| Error::not_found("concept", name_or_alias))
}

/// Resolves an image id or a unique prefix of one (at least 8 hex characters, any case) among
/// a concept's images.
pub fn resolve_image(concept: &Concept, wanted: &str) -> Result<ImageId> {
    resolve_among(&concept.name, &concept.images, wanted, "image")
}

/// [`resolve_image`] among `images` (a concept's references or its negatives, called `what`
/// in messages) of the concept named `concept`.
fn resolve_among(
    concept: &str,
    images: &[ConceptImage],
    wanted: &str,
    what: &'static str,
) -> Result<ImageId> {
    let wanted = wanted.trim().to_ascii_lowercase();
    if wanted.len() < 8 || !wanted.chars().all(|c| c.is_ascii_hexdigit()) {
        return Err(Error::invalid(format!(
            "invalid {what} id {wanted:?}: give at least 8 hex characters of it"
        )));
    }
    let matches: Vec<_> = images
        .iter()
        .filter(|i| i.id.0.starts_with(&wanted))
        .collect();
    match matches.as_slice() {
        [one] => Ok(one.id.clone()),
        [] => Err(Error::not_found(
            what,
            format!("{wanted} (of concept {concept:?})"),
        )),
        _ => Err(Error::invalid(format!(
            "{what} id {wanted:?} is ambiguous: give more characters"
        ))),
    }
}

// ---- names and aliases ----

/// A name or alias as a store writes it: `key` (lowercase, brackets stripped) is unique among
/// every name and alias of a tenant; `display` is what was given, trimmed, without brackets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NameClaim {
    pub key: String,
    pub display: String,
    pub is_alias: bool,
}

impl NameClaim {
    /// Checks and normalises a name (or alias) as given; an unusable one is
    /// [`Error::InvalidInput`].
    pub fn new(given: &str, is_alias: bool) -> Result<Self> {
        Ok(NameClaim {
            key: normalize_name_key(given)?,
            display: strip_brackets(given.trim()).to_owned(),
            is_alias,
        })
    }

    fn what(&self) -> &'static str {
        if self.is_alias {
            "alias"
        } else {
            "name"
        }
    }

    /// The conflict of this claim with a name held by `owner` (`None`: the concept itself).
    fn conflict(&self, owner: Option<&str>) -> Error {
        let (what, display) = (self.what(), &self.display);
        Error::Conflict(match owner {
            None => format!("{what} {display:?} is already used by this concept"),
            Some(owner) => format!("{what} {display:?} is already used by concept {owner:?}"),
        })
    }
}

/// A name or alias a store holds, with the concept that owns it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeldName {
    pub key: String,
    pub concept: ConceptId,
    /// The owner's name (for messages).
    pub concept_name: String,
    pub is_alias: bool,
}

/// The keys of the given names that are valid: what a backend looks up (as [`HeldName`]s)
/// before asking for a plan. Invalid ones are left to the plan, which reports them in order.
pub fn name_keys<'a>(names: impl IntoIterator<Item = &'a str>) -> Vec<String> {
    names
        .into_iter()
        .filter_map(|n| normalize_name_key(n).ok())
        .collect()
}

/// The names a plan claims, checked one after another against what is held and what the
/// plan itself claimed before.
struct Claims<'a> {
    /// Keys held by other concepts, with their owner's name.
    others: HashMap<&'a str, &'a str>,
    /// The concept's own keys as the plan goes (true: an alias).
    own: BTreeMap<String, bool>,
}

impl<'a> Claims<'a> {
    fn new(held: &'a [HeldName], concept: Option<&ConceptId>) -> Self {
        let mut others = HashMap::new();
        let mut own = BTreeMap::new();
        for h in held {
            if Some(&h.concept) == concept {
                own.insert(h.key.clone(), h.is_alias);
            } else {
                others.insert(h.key.as_str(), h.concept_name.as_str());
            }
        }
        Claims { others, own }
    }

    fn claim(&mut self, claim: &NameClaim) -> Result<()> {
        if let Some(owner) = self.others.get(claim.key.as_str()) {
            return Err(claim.conflict(Some(owner)));
        }
        if self.own.contains_key(&claim.key) {
            return Err(claim.conflict(None));
        }
        self.own.insert(claim.key.clone(), claim.is_alias);
        Ok(())
    }
}

// ---- adding a concept ----

/// What adding one concept writes, decided before anything is written.
#[derive(Debug, Clone)]
pub struct AddPlan<'a> {
    /// The name as displayed (trimmed, brackets stripped).
    pub name: String,
    /// Trimmed.
    pub category: String,
    pub info: String,
    /// The name, then each alias, in the order given.
    pub names: Vec<NameClaim>,
    /// Each image once (its first occurrence), with its position: its index in the list given.
    pub images: Vec<(i64, &'a ImageInput)>,
}

/// The keys to look up before [`plan_add`]: the new concept's name and aliases.
pub fn add_keys(new: &NewConcept) -> Vec<String> {
    name_keys(std::iter::once(new.name.as_str()).chain(new.aliases.iter().map(String::as_str)))
}

/// Plans adding `new` with `images` to a tenant that holds `held` (at least the names and
/// aliases under [`add_keys`]; others are ignored). Refused, in this order: no image
/// ([`Error::InvalidInput`]); then, name first and each alias in turn, an invalid one
/// (`InvalidInput`) or one already used, by another concept or earlier in this same concept
/// ([`Error::Conflict`]).
pub fn plan_add<'a>(
    new: &NewConcept,
    images: impl IntoIterator<Item = &'a ImageInput>,
    held: &[HeldName],
) -> Result<AddPlan<'a>> {
    let images: Vec<&ImageInput> = images.into_iter().collect();
    if images.is_empty() {
        return Err(Error::invalid(format!(
            "concept {:?} needs at least one reference image",
            new.name
        )));
    }
    let mut claims = Claims::new(held, None);
    let mut names = Vec::with_capacity(1 + new.aliases.len());
    let given = std::iter::once((new.name.as_str(), false))
        .chain(new.aliases.iter().map(|a| (a.as_str(), true)));
    for (given, is_alias) in given {
        let claim = NameClaim::new(given, is_alias)?;
        claims.claim(&claim)?;
        names.push(claim);
    }
    let mut seen = HashSet::new();
    let images = images
        .into_iter()
        .enumerate()
        .filter(|(_, image)| seen.insert(&image.id))
        .map(|(pos, image)| (pos as i64, image))
        .collect();
    Ok(AddPlan {
        name: strip_brackets(new.name.trim()).to_owned(),
        category: new.category.trim().to_owned(),
        info: new.info.clone(),
        names,
        images,
    })
}

// ---- editing a concept ----

/// What an edit writes, decided before anything is written. A backend carries it out in this
/// order: the rename (delete the concept's name and its own entry under the new key, an alias
/// the new name turns into; insert the new name; set `concepts.name`), `info`, `category`, the
/// alias removals and additions, the image and negative removals, the image and negative
/// additions (after the last position), then deletes each removed image no concept uses any
/// more, and sets `updated_at`.
#[derive(Debug, Clone)]
pub struct EditPlan<'a> {
    pub rename: Option<NameClaim>,
    pub info: Option<&'a str>,
    /// Trimmed.
    pub category: Option<String>,
    /// Keys of aliases of this concept to delete.
    pub remove_aliases: Vec<String>,
    pub add_aliases: Vec<NameClaim>,
    pub remove_images: Vec<ImageId>,
    /// In order; none is among the concept's images once the removals are done.
    pub add_images: Vec<&'a ImageInput>,
    pub remove_negatives: Vec<ImageId>,
    /// In order; none is among the concept's images or negatives once the removals are done.
    pub add_negatives: Vec<&'a ImageInput>,
    /// Later than the concept's `updated_at`, even on a clock that went back.
    pub updated_at: i64,
}

/// The keys to look up before [`plan_edit`]: the new name and the added aliases.
pub fn edit_keys(edit: &ConceptEdit) -> Vec<String> {
    name_keys(
        edit.rename
            .iter()
            .chain(&edit.add_aliases)
            .map(String::as_str),
    )
}

/// Plans `edit` of `before`, in a tenant holding `held`: every name and alias of `before`
/// itself, and any name or alias under [`edit_keys`]. `now` is the time of the edit (unix ms).
///
/// The steps are checked in the order they are written, each against the state the earlier
/// ones leave: the rename (renaming to one of the concept's own aliases turns that alias into
/// the name, and frees the old name), alias removals (an alias it does not have is
/// [`Error::NotFound`]), alias additions, image removals ([`resolve_image`]; the same image
/// twice is not found the second time), image additions (one the concept already has is a
/// [`Error::Conflict`]), negative removals and additions (the same checks among the
/// negatives; an image cannot be both a reference and a negative of one concept); and last,
/// an edit that would leave no reference image is [`Error::InvalidInput`].
pub fn plan_edit<'a>(
    before: &Concept,
    edit: &'a ConceptEdit,
    held: &[HeldName],
    now: i64,
) -> Result<EditPlan<'a>> {
    let mut claims = Claims::new(held, Some(&before.id));
    let rename = match &edit.rename {
        Some(new_name) => {
            let claim = NameClaim::new(new_name, false)?;
            claims.own.retain(|_, is_alias| *is_alias);
            claims.own.remove(&claim.key);
            claims.claim(&claim)?;
            Some(claim)
        }
        None => None,
    };
    let mut remove_aliases = Vec::with_capacity(edit.remove_aliases.len());
    for alias in &edit.remove_aliases {
        let key = normalize_name_key(alias)?;
        if claims.own.get(&key) != Some(&true) {
            return Err(Error::not_found(
                "alias",
                format!("{alias} (of concept {:?})", before.name),
            ));
        }
        claims.own.remove(&key);
        remove_aliases.push(key);
    }
    let mut add_aliases = Vec::with_capacity(edit.add_aliases.len());
    for alias in &edit.add_aliases {
        let claim = NameClaim::new(alias, true)?;
        claims.claim(&claim)?;
        add_aliases.push(claim);
    }

    let mut images: Vec<&ImageId> = before.images.iter().map(|i| &i.id).collect();
    let mut remove_images = Vec::with_capacity(edit.remove_images.len());
    for wanted in &edit.remove_images {
        let image = resolve_image(before, wanted)?;
        let Some(at) = images.iter().position(|i| **i == image) else {
            return Err(Error::not_found("image", wanted.clone()));
        };
        images.remove(at);
        remove_images.push(image);
    }
    let mut add_images = Vec::with_capacity(edit.add_images.len());
    for image in &edit.add_images {
        if images.contains(&&image.id) {
            return Err(Error::Conflict(format!(
                "image {} is already a reference image of this concept",
                short_id(&image.id)
            )));
        }
        images.push(&image.id);
        add_images.push(image);
    }
    let mut negatives: Vec<&ImageId> = before.negatives.iter().map(|i| &i.id).collect();
    let mut remove_negatives = Vec::with_capacity(edit.remove_negatives.len());
    for wanted in &edit.remove_negatives {
        let image = resolve_among(&before.name, &before.negatives, wanted, "negative example")?;
        let Some(at) = negatives.iter().position(|i| **i == image) else {
            return Err(Error::not_found("negative example", wanted.clone()));
        };
        negatives.remove(at);
        remove_negatives.push(image);
    }
    let mut add_negatives = Vec::with_capacity(edit.add_negatives.len());
    for image in &edit.add_negatives {
        if negatives.contains(&&image.id) {
            return Err(Error::Conflict(format!(
                "image {} is already a negative example of this concept",
                short_id(&image.id)
            )));
        }
        if images.contains(&&image.id) {
            return Err(Error::Conflict(format!(
                "image {} is a reference image of this concept, so it cannot also be a negative example",
                short_id(&image.id)
            )));
        }
        negatives.push(&image.id);
        add_negatives.push(image);
    }
    if let Some(clash) = add_images.iter().find(|i| negatives.contains(&&i.id)) {
        return Err(Error::Conflict(format!(
            "image {} is a negative example of this concept, so it cannot also be a reference image",
            short_id(&clash.id)
        )));
    }
    if images.is_empty() {
        return Err(Error::invalid(format!(
            "concept {:?} would have no reference image left; add one before removing the last",
            before.name
        )));
    }
    Ok(EditPlan {
        rename,
        info: edit.info.as_deref(),
        category: edit.category.as_ref().map(|c| c.trim().to_owned()),
        remove_aliases,
        add_aliases,
        remove_images,
        add_images,
        remove_negatives,
        add_negatives,
        updated_at: now.max(before.updated_at + 1),
    })
}

// ---- tenant settings ----

/// The longest setting key, in bytes.
pub const MAX_SETTING_KEY: usize = 64;
/// The largest setting value, in bytes.
pub const MAX_SETTING_VALUE: usize = 64 * 1024;

/// Checks a tenant setting before it is written: a key of 1 to [`MAX_SETTING_KEY`] lowercase
/// ASCII letters, digits, '.', '-' or '_', and a value (if any) of at most
/// [`MAX_SETTING_VALUE`] bytes.
pub fn check_setting(key: &str, value: Option<&str>) -> Result<()> {
    let ok =
        |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'.' | b'-' | b'_');
    if key.is_empty() || key.len() > MAX_SETTING_KEY || !key.bytes().all(ok) {
        return Err(Error::invalid(format!(
            "invalid setting key {key:?}: use 1-{MAX_SETTING_KEY} lowercase letters, digits, '.', '-' or '_'"
        )));
    }
    if let Some(value) = value.filter(|v| v.len() > MAX_SETTING_VALUE) {
        return Err(Error::invalid(format!(
            "setting {key} is {} bytes; at most {MAX_SETTING_VALUE} are kept",
            value.len()
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use rap_image::ImageMeta;

    fn image(n: u8) -> ImageInput {
        ImageInput {
            id: ImageId(format!("{n:02x}").repeat(32)),
            bytes: vec![n].into(),
            meta: ImageMeta {
                format: "png".into(),
                width: 1,
                height: 1,
            },
        }
    }

    fn new(name: &str, aliases: &[&str]) -> NewConcept {
        NewConcept {
            name: name.into(),
            aliases: aliases.iter().map(|a| a.to_string()).collect(),
            category: " dog ".into(),
            info: "info".into(),
        }
    }

    fn held(key: &str, concept: &str, is_alias: bool) -> HeldName {
        HeldName {
            key: key.into(),
            concept: ConceptId(concept.into()),
            concept_name: concept.into(),
            is_alias,
        }
    }

    /// Concept "bo" (id "bo") with alias "shiba" and the given images.
    fn bo(images: &[u8]) -> (Concept, Vec<HeldName>) {
        let concept = Concept {
            id: ConceptId("bo".into()),
            name: "Bo".into(),
            aliases: vec!["Shiba".into()],
            category: "dog".into(),
            info: String::new(),
            images: images
                .iter()
                .map(|n| ConceptImage {
                    id: image(*n).id,
                    width: 1,
                    height: 1,
                    format: "png".into(),
                    bytes: 1,
                })
                .collect(),
            negatives: Vec::new(),
            created_at: 10,
            updated_at: 20,
        };
        let held = vec![held("bo", "bo", false), held("shiba", "bo", true)];
        (concept, held)
    }

    fn conflict(e: Error) -> String {
        match e {
            Error::Conflict(m) => m,
            other => panic!("expected a conflict, got {other:?}"),
        }
    }

    #[test]
    fn claims_are_normalised_and_checked() {
        let c = NameClaim::new("  <Bo Bo>  ", true).unwrap();
        assert_eq!((c.key.as_str(), c.display.as_str()), ("bo bo", "Bo Bo"));
        assert!(c.is_alias);
        for bad in ["", "a,b", "<>", "x\ny"] {
            assert!(matches!(
                NameClaim::new(bad, false),
                Err(Error::InvalidInput(_))
            ));
        }
        assert_eq!(name_keys(["Bo", "bad,name", "<Rex>"]), vec!["bo", "rex"]);
    }

    #[test]
    fn add_plans_names_images_and_fields() {
        let n = new("<Bo>", &["Shiba", "Akita"]);
        let (a, b) = (image(1), image(2));
        let plan = plan_add(&n, [&a, &b, &a], &[]).unwrap();
        assert_eq!(plan.name, "Bo");
        assert_eq!(plan.category, "dog");
        let keys: Vec<_> = plan.names.iter().map(|c| c.key.as_str()).collect();
        assert_eq!(keys, vec!["bo", "shiba", "akita"]);
        assert!(!plan.names[0].is_alias && plan.names[1].is_alias);
        let images: Vec<_> = plan.images.iter().map(|(p, i)| (*p, &i.id)).collect();
        assert_eq!(images, vec![(0, &a.id), (1, &b.id)], "a repeat is dropped");
        assert_eq!(add_keys(&n), vec!["bo", "shiba", "akita"]);
    }

    #[test]
    fn add_refuses_clashes_in_order() {
        let a = image(1);
        let err = plan_add(&new("bo", &[]), [], &[]).unwrap_err();
        assert!(
            matches!(&err, Error::InvalidInput(m) if m.contains("at least one reference image"))
        );
        // Another concept's alias, whatever the case.
        let taken = [held("shiba", "Rex", true)];
        let err = plan_add(&new("dug", &["SHIBA"]), [&a], &taken).unwrap_err();
        assert_eq!(
            conflict(err),
            r#"alias "SHIBA" is already used by concept "Rex""#
        );
        let err = plan_add(&new("Shiba", &[]), [&a], &taken).unwrap_err();
        assert_eq!(
            conflict(err),
            r#"name "Shiba" is already used by concept "Rex""#
        );
        // Its own name again as an alias.
        let err = plan_add(&new("twice", &["<Twice>"]), [&a], &[]).unwrap_err();
        assert_eq!(
            conflict(err),
            r#"alias "Twice" is already used by this concept"#
        );
        // The first failure in order wins: an invalid alias before a clashing one.
        let err = plan_add(&new("dug", &["bad,one", "shiba"]), [&a], &taken).unwrap_err();
        assert!(matches!(err, Error::InvalidInput(_)), "{err:?}");
        let err = plan_add(&new("dug", &["shiba", "bad,one"]), [&a], &taken).unwrap_err();
        assert!(matches!(err, Error::Conflict(_)), "{err:?}");
        // Unrelated held names change nothing.
        assert!(plan_add(&new("dug", &[]), [&a], &taken).is_ok());
    }

    #[test]
    fn edit_renames_to_an_own_alias_and_frees_the_old_name() {
        let (before, held) = bo(&[1]);
        let edit = ConceptEdit {
            rename: Some("shiba".into()),
            add_aliases: vec!["Bo".into()],
            ..Default::default()
        };
        let plan = plan_edit(&before, &edit, &held, 5).unwrap();
        assert_eq!(plan.rename.as_ref().map(|c| c.key.as_str()), Some("shiba"));
        assert_eq!(plan.add_aliases[0].key, "bo");
        assert_eq!(
            plan.updated_at, 21,
            "later than before even with an old clock"
        );
        // Renaming to its own name in another case is fine too.
        let edit = ConceptEdit {
            rename: Some("BO".into()),
            ..Default::default()
        };
        assert!(plan_edit(&before, &edit, &held, 100).is_ok());
        // But the renamed-to alias is gone: removing it in the same edit is not found.
        let edit = ConceptEdit {
            rename: Some("shiba".into()),
            remove_aliases: vec!["shiba".into()],
            ..Default::default()
        };
        let err = plan_edit(&before, &edit, &held, 100).unwrap_err();
        assert!(
            matches!(err, Error::NotFound { kind: "alias", .. }),
            "{err:?}"
        );
    }

    #[test]
    fn edit_refuses_clashes_and_missing_aliases() {
        let (before, mut names) = bo(&[1]);
        names.push(held("dug", "Dug", false));
        let held = names;
        let rename = ConceptEdit {
            rename: Some("DUG".into()),
            ..Default::default()
        };
        assert_eq!(
            conflict(plan_edit(&before, &rename, &held, 0).unwrap_err()),
            r#"name "DUG" is already used by concept "Dug""#
        );
        let alias = ConceptEdit {
            add_aliases: vec!["shiba".into()],
            ..Default::default()
        };
        assert_eq!(
            conflict(plan_edit(&before, &alias, &held, 0).unwrap_err()),
            r#"alias "shiba" is already used by this concept"#
        );
        // The old name is free once renamed: it can become an alias in the same edit.
        let swap = ConceptEdit {
            rename: Some("Bo the Shiba".into()),
            add_aliases: vec!["bo".into()],
            ..Default::default()
        };
        assert!(plan_edit(&before, &swap, &held, 0).is_ok());
        // An alias of another concept (or the name) cannot be removed from this one.
        for alias in ["dug", "bo", "nope"] {
            let edit = ConceptEdit {
                remove_aliases: vec![alias.into()],
                ..Default::default()
            };
            let err = plan_edit(&before, &edit, &held, 0).unwrap_err();
            assert!(
                matches!(&err, Error::NotFound { kind: "alias", name } if name.contains("(of concept \"Bo\")")),
                "{alias}: {err:?}"
            );
        }
        let edit = ConceptEdit {
            remove_aliases: vec!["Shiba".into()],
            add_aliases: vec!["shiba".into()],
            ..Default::default()
        };
        let plan = plan_edit(&before, &edit, &held, 0).unwrap();
        assert_eq!(plan.remove_aliases, vec!["shiba"]);
    }

    #[test]
    fn edit_plans_images_and_keeps_at_least_one() {
        let (before, held) = bo(&[1, 2]);
        let three = image(3);
        let edit = ConceptEdit {
            remove_images: vec![image(1).id.0[..10].to_uppercase()],
            add_images: vec![three.clone()],
            category: Some("  shiba ".into()),
            ..Default::default()
        };
        let plan = plan_edit(&before, &edit, &held, 0).unwrap();
        assert_eq!(plan.remove_images, vec![image(1).id]);
        assert_eq!(plan.add_images.len(), 1);
        assert_eq!(plan.category.as_deref(), Some("shiba"));

        let all = ConceptEdit {
            remove_images: vec![image(1).id.0.clone(), image(2).id.0.clone()],
            ..Default::default()
        };
        let err = plan_edit(&before, &all, &held, 0).unwrap_err();
        assert!(
            matches!(&err, Error::InvalidInput(m) if m.contains("no reference image left")),
            "{err:?}"
        );
        // Removing every image while adding one is fine; so is removing one and adding it back.
        let replace = ConceptEdit {
            remove_images: all.remove_images.clone(),
            add_images: vec![image(1)],
            ..Default::default()
        };
        assert!(plan_edit(&before, &replace, &held, 0).is_ok());

        let twice = ConceptEdit {
            remove_images: vec![image(1).id.0.clone(), image(1).id.0[..8].into()],
            ..Default::default()
        };
        let err = plan_edit(&before, &twice, &held, 0).unwrap_err();
        assert!(
            matches!(err, Error::NotFound { kind: "image", .. }),
            "{err:?}"
        );
        let held_image = ConceptEdit {
            add_images: vec![image(2)],
            ..Default::default()
        };
        assert_eq!(
            conflict(plan_edit(&before, &held_image, &held, 0).unwrap_err()),
            format!(
                "image {} is already a reference image of this concept",
                &image(2).id.0[..12]
            )
        );
        let added_twice = ConceptEdit {
            add_images: vec![three.clone(), three],
            ..Default::default()
        };
        assert!(matches!(
            plan_edit(&before, &added_twice, &held, 0),
            Err(Error::Conflict(_))
        ));
    }

    #[test]
    fn edit_plans_negatives_apart_from_references() {
        let (mut before, held) = bo(&[1, 2]);
        let (with_negative, _) = bo(&[5]);
        before.negatives = with_negative.images;
        let edit = ConceptEdit {
            add_negatives: vec![image(3)],
            remove_negatives: vec![image(5).id.0[..8].into()],
            ..Default::default()
        };
        let plan = plan_edit(&before, &edit, &held, 0).unwrap();
        assert_eq!(plan.remove_negatives, vec![image(5).id]);
        assert_eq!(plan.add_negatives[0].id, image(3).id);
        assert!(plan.add_images.is_empty() && plan.remove_images.is_empty());

        // A reference is not a negative, and the other way round.
        let err = plan_edit(
            &before,
            &ConceptEdit {
                add_negatives: vec![image(1)],
                ..Default::default()
            },
            &held,
            0,
        )
        .unwrap_err();
        assert!(conflict(err).contains("is a reference image of this concept"));
        let err = plan_edit(
            &before,
            &ConceptEdit {
                add_images: vec![image(5)],
                ..Default::default()
            },
            &held,
            0,
        )
        .unwrap_err();
        assert!(conflict(err).contains("is a negative example of this concept"));
        let err = plan_edit(
            &before,
            &ConceptEdit {
                remove_negatives: vec![image(1).id.0.clone()],
                ..Default::default()
            },
            &held,
            0,
        )
        .unwrap_err();
        assert!(
            matches!(
                err,
                Error::NotFound {
                    kind: "negative example",
                    ..
                }
            ),
            "{err:?}"
        );
        // Negatives never count as the reference image a concept must keep.
        let err = plan_edit(
            &before,
            &ConceptEdit {
                remove_images: vec![image(1).id.0.clone(), image(2).id.0.clone()],
                add_negatives: vec![image(3)],
                ..Default::default()
            },
            &held,
            0,
        )
        .unwrap_err();
        assert!(matches!(err, Error::InvalidInput(_)), "{err:?}");
    }

    #[test]
    fn images_resolve_by_unique_prefix() {
        let (before, _) = bo(&[0xab, 0xac]);
        assert_eq!(
            resolve_image(&before, " ABABABAB ").unwrap(),
            image(0xab).id
        );
        for (wanted, what) in [
            ("abab", "too short"),
            ("xyzxyzxyz", "not hex"),
            ("acacacacacacacacac", "ok"),
        ] {
            let r = resolve_image(&before, wanted);
            match what {
                "ok" => assert_eq!(r.unwrap(), image(0xac).id),
                _ => assert!(matches!(r, Err(Error::InvalidInput(_))), "{what}"),
            }
        }
        let (two, _) = bo(&[0xab, 0xab]);
        assert!(matches!(
            resolve_image(&two, "abababab"),
            Err(Error::InvalidInput(m)) if m.contains("ambiguous")
        ));
        assert!(matches!(
            resolve_image(&before, "cdcdcdcd"),
            Err(Error::NotFound { kind: "image", .. })
        ));
    }

    #[test]
    fn small_helpers() {
        assert_eq!(
            short_id(&ImageId("0123456789abcdef".into())),
            "0123456789ab"
        );
        assert_eq!(short_id(&ImageId("abc".into())), "abc");
        let r = Region::whole(16, 12);
        assert_eq!(parse_region(1, &region_to_text(&r).unwrap()).unwrap(), r);
        assert!(
            matches!(parse_region(7, "{"), Err(Error::Storage { message, .. }) if message.contains("key 7"))
        );
        assert!(matches!(
            lookup_key("bad,name"),
            Err(Error::NotFound { .. })
        ));
        assert_eq!(lookup_key("<Bo>").unwrap(), "bo");
        let io = std::io::Error::other("boom");
        assert!(matches!(database_error("dup".into(), true, io), Error::Conflict(m) if m == "dup"));
        let io = std::io::Error::other("boom");
        assert!(matches!(
            database_error("broken".into(), false, io),
            Error::Storage {
                source: Some(_),
                ..
            }
        ));
        assert!(now_ms() > 1_700_000_000_000);
    }

    #[test]
    fn setting_keys_and_values_are_checked() {
        assert!(check_setting("encoders", Some("{}")).is_ok());
        assert!(check_setting("a.b-c_1", None).is_ok());
        for bad in ["", "Encoders", "a b", "é", &"k".repeat(65)] {
            assert!(
                matches!(check_setting(bad, None), Err(Error::InvalidInput(_))),
                "{bad:?}"
            );
        }
        let big = "x".repeat(MAX_SETTING_VALUE + 1);
        assert!(matches!(
            check_setting("k", Some(&big)),
            Err(Error::InvalidInput(m)) if m.contains("setting k")
        ));
    }
}
