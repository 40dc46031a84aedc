//! For the tests of store backends (feature `testing`): the conformance suite every
//! [`crate::ConceptStore`] must pass, its property test ([`properties`]), and [`crate::conformance_suite!`], which runs each of its
//! cases as its own `#[test]` on a backend.
//!
//! A backend's test binary names a module, an expression that opens a fresh, empty store
//! (as `(guard, store)`: the guard keeps whatever the store lives in, a temporary folder or
//! database, until the test ends), and a function that opens a second handle on the same
//! memory from that guard (as a second process would):
//! ```ignore
//! fn sqlite() -> (tempfile::TempDir, SqliteStore) { ... }
//! fn sqlite_again(dir: &tempfile::TempDir) -> SqliteStore { ... }
//! rap_memory::conformance_suite!(embedded_sqlite, sqlite(), sqlite_again);
//! ```

pub mod conformance;
pub mod properties;

/// Calls `again` with `guard` (lets [`crate::conformance_suite!`] take a closure whose
/// argument type is inferred).
pub fn reopen<G, S>(guard: &G, again: impl FnOnce(&G) -> S) -> S {
    again(guard)
}

/// Runs every case of [`conformance`] on a backend, each as its own `#[test]` in module
/// `$backend`: `$open` (evaluated in each test) gives a fresh `(guard, store)`; `$again` maps
/// `&guard` to a second handle on the same memory. See [the module](crate::testing).
/// `property_cases = N` sets how many sequences the property test runs by default (a backend
/// whose store is slow to create runs fewer; `RAP_PROPTEST_CASES` overrides it).
#[macro_export]
macro_rules! conformance_suite {
    ($backend:ident, $open:expr, $again:expr) => {
        $crate::conformance_suite!(
            $backend, $open, $again,
            property_cases = $crate::testing::properties::DEFAULT_CASES
        );
    };
    ($backend:ident, $open:expr, $again:expr, property_cases = $cases:expr) => {
        mod $backend {
            #[allow(unused_imports)]
            use super::*;
            $crate::conformance_suite!(@cases $open;
                add_then_find_by_name_alias_any_case_and_brackets,
                unknown_concepts_and_images_are_not_found,
                names_and_aliases_are_unique_together_and_failures_change_nothing,
                edit_renames_changes_fields_images_and_aliases_at_once,
                images_are_stored_once_and_collected_with_their_last_user,
                tenants_never_see_each_other,
                search_sees_every_add_edit_and_remove_at_once,
                top_k_is_ranked_and_exact_for_a_small_tenant,
                key_log_lets_an_index_catch_up,
                api_keys_are_hashed_scoped_and_revocable,
                a_ten_concept_tenant_among_many_gets_exactly_its_own_top_k,
                batches_write_what_single_adds_write,
                tenants_are_those_holding_concepts,
                import_keeps_ids_and_times_and_refuses_a_held_tenant,
                categories_are_each_tenants_own_once,
                api_keys_move_with_their_hashes_and_revocations,
                tenant_settings_are_each_tenants_own,
                settings_move_with_a_tenants_memory,
                negatives_are_kept_apart_from_references_and_move_with_the_memory,
            );
            $crate::conformance_suite!(@pairs $open, $again;
                every_handle_sees_every_write_at_once,
                settings_are_shared_by_every_handle,
                the_memory_version_moves_with_every_change_of_concepts,
            );
            #[test]
            fn store_matches_a_model_through_any_sequence() {
                $crate::testing::properties::store_matches_a_model_through_any_sequence(
                    $cases,
                    || $open,
                    $again,
                );
            }
        }
    };
    (@cases $open:expr; $($case:ident),* $(,)?) => {
        $(
            #[test]
            fn $case() {
                let (_guard, store) = $open;
                $crate::testing::conformance::$case(&store);
            }
        )*
    };
    (@pairs $open:expr, $again:expr; $($case:ident),* $(,)?) => {
        $(
            #[test]
            fn $case() {
                let (guard, one) = $open;
                let two = $crate::testing::reopen(&guard, $again);
                $crate::testing::conformance::$case(&one, &two);
            }
        )*
    };
}
