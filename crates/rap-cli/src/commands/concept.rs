//! `rap concept add|list|show|edit|rm`: managing the user's concepts.

use crate::context::Context;
use crate::output;
use anyhow::Result;
use clap::Subcommand;
use rap_core::{BoundingBox, Concept, NewConcept};
use rap_memory::ConceptEdit;
use std::path::PathBuf;

#[derive(Subcommand)]
pub enum ConceptCommand {
    /// Remember a new concept from one or more reference images.
    Add {
        /// Its name (unique, case-insensitive), as it will appear in prompts: <NAME>
        name: String,
        /// A reference image (repeat for several)
        #[arg(long = "image", required = true)]
        images: Vec<PathBuf>,
        /// What the assistant should know about it
        #[arg(long, default_value = "")]
        info: String,
        /// What kind of thing it is (dog, mug, person...)
        #[arg(long, default_value = "")]
        category: String,
        /// Another name it goes by (repeat for several)
        #[arg(long = "alias")]
        aliases: Vec<String>,
    },
    /// List the concepts.
    List,
    /// Show one concept (by name or alias).
    Show {
        /// Its name or an alias (any case; <NAME> works too)
        name: String,
    },
    /// Change a concept; everything given is applied at once.
    Edit {
        /// The concept to change: its name or an alias (any case; <NAME> works too)
        name: String,
        /// Its new name
        #[arg(long, value_name = "NEW_NAME")]
        rename: Option<String>,
        /// What the assistant should know about it (replaces the old text; "" clears it)
        #[arg(long)]
        info: Option<String>,
        /// What kind of thing it is (dog, mug, person...; "" clears it)
        #[arg(long)]
        category: Option<String>,
        /// Add a reference image (repeatable)
        #[arg(long = "add-image")]
        add_images: Vec<PathBuf>,
        /// Remove a reference image by id or a unique prefix of 8+ characters (repeatable)
        #[arg(long = "remove-image")]
        remove_images: Vec<String>,
        /// Add an alias (repeatable)
        #[arg(long = "alias")]
        aliases: Vec<String>,
        /// Remove an alias (repeatable)
        #[arg(long = "remove-alias")]
        remove_aliases: Vec<String>,
        /// Add a negative example: a photo of something that is NOT this concept, such as a
        /// look-alike it was mistaken for (repeatable)
        #[arg(long = "add-negative")]
        add_negatives: Vec<PathBuf>,
        /// Only this part of the negative photo, as x1,y1,x2,y2 in pixels (one per
        /// --add-negative, in order; e.g. the box `rap retrieve` printed)
        #[arg(long = "box", value_name = "X1,Y1,X2,Y2")]
        boxes: Vec<String>,
        /// Remove a negative example by id or a unique prefix of 8+ characters (repeatable)
        #[arg(long = "remove-negative")]
        remove_negatives: Vec<String>,
    },
    /// Forget a concept, its keys and the images nothing else uses.
    Rm {
        /// Its name or an alias
        name: String,
    },
}

pub fn run(ctx: &Context, cmd: ConceptCommand) -> Result<()> {
    let engine = ctx.engine()?;
    let tenant = &ctx.tenant;
    match cmd {
        ConceptCommand::Add {
            name,
            images,
            info,
            category,
            aliases,
        } => {
            let images = images
                .iter()
                .map(|p| engine.read_image(p))
                .collect::<rap_core::Result<Vec<_>>>()?;
            let new = NewConcept {
                name,
                aliases,
                category,
                info,
            };
            let concept = engine.add_concept(tenant, &new, images)?;
            print_concept(ctx, &concept, "added")
        }
        ConceptCommand::List => {
            let concepts = engine.concepts(tenant)?;
            if ctx.json {
                return output::print_json(&concepts);
            }
            if concepts.is_empty() {
                println!("no concepts yet: add one with `rap concept add NAME --image PATH`");
                return Ok(());
            }
            let mut t = output::table(&["name", "category", "images", "aliases", "info"]);
            for c in &concepts {
                let images = match c.negatives.len() {
                    0 => c.images.len().to_string(),
                    n => format!("{} (+{n} not)", c.images.len()),
                };
                t.add_row(vec![
                    format!("<{}>", c.name),
                    c.category.clone(),
                    images,
                    c.aliases.join(", "),
                    truncate(&c.info, 60),
                ]);
            }
            println!("{t}");
            Ok(())
        }
        ConceptCommand::Show { name } => {
            let concept = engine.concept(tenant, &name)?;
            print_concept(ctx, &concept, "")
        }
        ConceptCommand::Edit {
            name,
            rename,
            info,
            category,
            add_images,
            remove_images,
            aliases,
            remove_aliases,
            add_negatives,
            boxes,
            remove_negatives,
        } => {
            let add_images = add_images
                .iter()
                .map(|p| engine.read_image(p))
                .collect::<rap_core::Result<Vec<_>>>()?;
            let boxes = boxes
                .iter()
                .map(|b| b.parse::<BoundingBox>())
                .collect::<rap_core::Result<Vec<_>>>()
                .map_err(|e| anyhow::anyhow!("--box {e}"))?;
            if !boxes.is_empty() && boxes.len() != add_negatives.len() {
                anyhow::bail!(
                    "give one --box per --add-negative ({} boxes for {} negatives), or none",
                    boxes.len(),
                    add_negatives.len()
                );
            }
            let add_negatives = add_negatives
                .iter()
                .enumerate()
                .map(|(i, p)| {
                    let bytes = rap_image::read_file(p, ctx.limits())?;
                    engine.negative_example(bytes, boxes.get(i))
                })
                .collect::<rap_core::Result<Vec<_>>>()?;
            let nothing_given = rename.is_none()
                && info.is_none()
                && category.is_none()
                && add_images.is_empty()
                && remove_images.is_empty()
                && aliases.is_empty()
                && remove_aliases.is_empty()
                && add_negatives.is_empty()
                && remove_negatives.is_empty();
            let before = engine.concept(tenant, &name)?;
            if nothing_given {
                if !ctx.json {
                    println!(
                        "nothing to change for <{}>: give --rename, --info, --category, --alias, --add-image... (rap concept edit --help)",
                        before.name
                    );
                }
                return print_concept(ctx, &before, "");
            }
            let edit = ConceptEdit {
                rename,
                info,
                category,
                add_images,
                remove_images,
                add_aliases: aliases,
                remove_aliases,
                add_negatives,
                remove_negatives,
            };
            let concept = engine.edit_concept(tenant, &name, edit)?;
            let verb = if same_content(&before, &concept) {
                "no change to"
            } else {
                "updated"
            };
            print_concept(ctx, &concept, verb)
        }
        ConceptCommand::Rm { name } => {
            let concept = engine.remove_concept(tenant, &name)?;
            print_concept(ctx, &concept, "removed")
        }
    }
}

/// Whether an edit left the concept as it was (every field but its modification time).
fn same_content(a: &Concept, b: &Concept) -> bool {
    let fields = |c: &Concept| {
        let mut v = serde_json::to_value(c).unwrap_or_default();
        if let Some(map) = v.as_object_mut() {
            map.remove("updated_at");
        }
        v
    };
    fields(a) == fields(b)
}

fn truncate(s: &str, max: usize) -> String {
    let s = s.replace('\n', " ");
    if s.chars().count() <= max {
        s
    } else {
        format!("{}...", s.chars().take(max - 3).collect::<String>())
    }
}

fn print_concept(ctx: &Context, c: &Concept, verb: &str) -> Result<()> {
    if ctx.json {
        return output::print_json(c);
    }
    if !verb.is_empty() {
        println!("{verb} <{}>", c.name);
    }
    println!("id:       {}", c.id);
    println!("name:     {}", c.name);
    if !c.aliases.is_empty() {
        println!("aliases:  {}", c.aliases.join(", "));
    }
    println!("category: {}", c.category);
    println!("info:     {}", c.info);
    println!("images:");
    for i in &c.images {
        println!(
            "  {}  {}x{} {} {} bytes",
            &i.id.0[..16],
            i.width,
            i.height,
            i.format,
            i.bytes
        );
    }
    if !c.negatives.is_empty() {
        println!("not this concept (negative examples):");
        for i in &c.negatives {
            println!("  {}  {}x{} {}", &i.id.0[..16], i.width, i.height, i.format);
        }
    }
    Ok(())
}
