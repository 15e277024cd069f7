//! Which bindings name whom: every binding's id filed under the keys of its subjects
//! ([`SubjectKey`]), kept by the same watch as the store. A plan or a verification looks up the
//! target's keys instead of reading every binding in scope, so its cost does not grow with the
//! number of bindings. Only ids are kept (the bindings stay in the store, once).

use std::collections::BTreeSet;
use std::sync::RwLock;

use kube::Resource;
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::watcher::Event;

use crate::plan::subject::{SubjectKey, keys_of};

/// A binding's namespace (`None`: cluster-scoped) and name.
pub(super) type Id = (Option<Box<str>>, Box<str>);

/// Binding ids by subject key, for one kind of binding.
#[derive(Default)]
pub(super) struct BySubject {
    state: RwLock<State>,
}

#[derive(Default)]
struct State {
    /// (key, binding) for every subject of every binding the store holds.
    live: BTreeSet<(SubjectKey, Id)>,
    /// What a relist in progress has delivered; it replaces `live` when the relist ends, as the
    /// store's own buffer does.
    relisting: Option<BTreeSet<(SubjectKey, Id)>>,
}

/// What the index files of a binding: its id and its subjects' keys.
pub(super) trait Filed: Resource<DynamicType = ()> {
    fn subject_keys(&self) -> Vec<SubjectKey>;
    /// Whether `other` (the same binding, another version) grants exactly what this one does:
    /// the same roleRef and subjects.
    fn grants_as(&self, other: &Self) -> bool;
}

impl Filed for k8s_openapi::api::rbac::v1::RoleBinding {
    fn subject_keys(&self) -> Vec<SubjectKey> {
        keys_of(self.subjects.as_deref().unwrap_or_default(), self.metadata.namespace.as_deref()).collect()
    }
    fn grants_as(&self, other: &Self) -> bool {
        self.role_ref == other.role_ref && self.subjects == other.subjects
    }
}

impl Filed for k8s_openapi::api::rbac::v1::ClusterRoleBinding {
    fn subject_keys(&self) -> Vec<SubjectKey> {
        keys_of(self.subjects.as_deref().unwrap_or_default(), None).collect()
    }
    fn grants_as(&self, other: &Self) -> bool {
        self.role_ref == other.role_ref && self.subjects == other.subjects
    }
}

/// Whether an event changes what the store's bindings grant, judged before the store applies it:
/// a binding created, deleted, or changed in its roleRef or subjects, and a relist's end (its
/// list replaces the store). A change of annotations or labels (the barrier's writes) is not.
pub(super) fn changes_grants<K: Filed + Clone>(store: &Store<K>, ev: &Event<K>) -> bool {
    match ev {
        Event::Apply(obj) => store.get(&ObjectRef::from_obj(obj)).is_none_or(|old| !old.grants_as(obj)),
        Event::Delete(_) | Event::InitDone => true,
        Event::Init | Event::InitApply(_) => false,
    }
}

fn id_of<K: Resource>(obj: &K) -> Id {
    let meta = obj.meta();
    (meta.namespace.as_deref().map(Into::into), meta.name.as_deref().unwrap_or_default().into())
}

impl BySubject {
    /// Files one watch event. Called before the store applies it: `store` still holds the
    /// binding as it was, whose keys are taken out.
    pub fn apply<K: Filed + Clone>(&self, store: &Store<K>, ev: &Event<K>) {
        let mut st = self.state.write().unwrap_or_else(|p| p.into_inner());
        let forget = |live: &mut BTreeSet<(SubjectKey, Id)>, obj: &K| {
            let id = id_of(obj);
            let old = store.get(&ObjectRef::from_obj(obj));
            for key in old.iter().flat_map(|o| o.subject_keys()).chain(obj.subject_keys()) {
                live.remove(&(key, id.clone()));
            }
        };
        match ev {
            Event::Apply(obj) => {
                forget(&mut st.live, obj);
                let id = id_of(obj);
                st.live.extend(obj.subject_keys().into_iter().map(|k| (k, id.clone())));
            }
            Event::Delete(obj) => forget(&mut st.live, obj),
            Event::Init => st.relisting = Some(BTreeSet::new()),
            Event::InitApply(obj) => {
                let id = id_of(obj);
                let keys = obj.subject_keys();
                if let Some(r) = st.relisting.as_mut() {
                    r.extend(keys.into_iter().map(|k| (k, id.clone())));
                }
            }
            Event::InitDone => {
                if let Some(r) = st.relisting.take() {
                    st.live = r;
                }
            }
        }
    }

    /// The ids filed under any of `keys`, each once, in order.
    pub fn ids(&self, keys: &BTreeSet<SubjectKey>) -> BTreeSet<Id> {
        let st = self.state.read().unwrap_or_else(|p| p.into_inner());
        let mut out = BTreeSet::new();
        for &key in keys {
            let from = (key, (None, Box::<str>::default()));
            out.extend(st.live.range(from..).take_while(|(k, _)| *k == key).map(|(_, id)| id.clone()));
        }
        out
    }

    /// How many (key, binding) pairs are filed (for tests and memory figures).
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.state.read().unwrap_or_else(|p| p.into_inner()).live.len()
    }
}
