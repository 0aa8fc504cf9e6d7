#include "flowshaper/controller/daemon.hpp"

#include <spdlog/fmt/fmt.h>

#include <algorithm>
#include <cerrno>

#include "flowshaper/controller/apply.hpp"
#include "flowshaper/policy/units.hpp"

namespace flowshaper::controller {

namespace {

constexpr net::Family kFamilies[] = {net::Family::V4, net::Family::V6};

kernel::MangleSpec mangle_spec(const policy::Policy& policy, const plan::MarkLayout& marks,
                               const std::optional<kernel::MangleSpec::Candidate>& prefilter) {
    kernel::MangleSpec spec;
    spec.mark_mask = marks.restore_mask();
    spec.candidate = prefilter;
    for (size_t i = 0; i < policy.detects.size(); ++i)
        spec.dscp_rules.push_back(
            {marks.rule_value(i), marks.rule_mask(), policy.detects[i].dscp, policy.detects[i].name});
    return spec;
}

// The kernel can pick the candidates when every rule is decided by flow_bytes alone: a
// connection's total is the kernel's own counter, and xt_connbytes compares it on every packet.
// client_bytes and client_rate sum many connections, small ones included: they need every entry.
std::optional<uint64_t> prefilter_bytes(const policy::Policy& policy, std::string* why_not) {
    std::optional<uint64_t> smallest;
    for (const auto& d : policy.detects) {
        if (!d.flow_bytes || d.client_bytes || d.client_rate_bits_per_s) {
            if (why_not)
                *why_not = "rule " + d.name + " sums connections (client_bytes or client_rate): " +
                           "polls read the whole conntrack table";
            return std::nullopt;
        }
        smallest = std::min(smallest.value_or(*d.flow_bytes), *d.flow_bytes);
    }
    return smallest;
}

std::string rate_text(uint64_t bits) {
    return policy::format_rate(bits);
}

}  // namespace

detect::FlowSample to_detect(const kernel::FlowSample& f) {
    detect::FlowSample d;
    d.id = f.id;
    d.family = f.family;
    d.l4proto = f.l4proto;
    d.orig_src = f.orig_src;
    d.orig_dst = f.orig_dst;
    d.orig_sport = f.orig_sport;
    d.orig_dport = f.orig_dport;
    d.orig_bytes = f.orig_bytes;
    d.reply_bytes = f.reply_bytes;
    return d;
}

std::vector<detect::FlowSample> to_detect(const std::vector<kernel::FlowSample>& flows) {
    std::vector<detect::FlowSample> out;
    out.reserve(flows.size());
    for (const auto& f : flows) out.push_back(to_detect(f));
    return out;
}

Daemon::Daemon(policy::Policy policy, DaemonPorts ports, std::shared_ptr<spdlog::logger> log,
               DaemonOptions options)
    : policy_(std::move(policy)), ports_(ports), log_(std::move(log)), options_(options) {}

std::vector<plan::HeavyClient> Daemon::heavy() const {
    std::vector<plan::HeavyClient> out;
    for (const auto& [key, state] : heavy_) out.push_back({key.rule, key.client, state.mark});
    return out;
}

Result<Daemon::Layout> Daemon::make_layout(const policy::Policy& policy, std::vector<std::string>* notes) {
    auto resolved = plan::resolve(policy.settings, ports_.tc.features());
    if (!resolved) return resolved.error();
    Layout layout;
    layout.fw = resolved->classifier == plan::ClassifierKind::Fw;
    std::string why_not;
    auto min_bytes = prefilter_bytes(policy, &why_not);
    auto marks = plan::MarkLayout::make(policy.settings.mark_mask, policy.detects.size(), layout.fw,
                                        min_bytes.has_value());
    if (!marks) return marks.error();
    layout.marks = *marks;
    if (min_bytes && marks->candidate_bit() != 0)
        layout.prefilter = kernel::MangleSpec::Candidate{*min_bytes, marks->candidate_bit()};
    else if (min_bytes)
        why_not =
            "mark_mask has no bit to spare for the candidate flag: polls read the whole conntrack table";
    detect::Options dopts;
    dopts.poll_interval_ms = policy.settings.poll_interval_ms;
    layout.detector = std::make_unique<detect::Detector>(policy.detects, local_list_, dopts);
    if (notes) {
        *notes = resolved->notes;
        if (layout.prefilter)
            notes->push_back(fmt::format(
                "conntrack prefilter: the kernel flags connections past {} bytes with ctmark bit {:#x} "
                "(xt_connbytes); polls read only those and the heavy clients' connections",
                layout.prefilter->min_bytes, layout.prefilter->bit));
        else if (!why_not.empty())
            notes->push_back("conntrack prefilter off: " + why_not);
    }
    return layout;
}

void Daemon::use(policy::Policy policy, Layout layout) {
    policy_ = std::move(policy);
    fw_ = layout.fw;
    prefilter_ = layout.prefilter;
    marks_ = layout.marks;
    detector_ = std::move(layout.detector);
    heavy_.clear();
    free_client_numbers_.clear();
    for (uint32_t n = 1; fw_ && n <= marks_.max_clients() && n <= 4096; ++n) free_client_numbers_.insert(n);
    tc_dirty_ = true;
    full_dump_ = true;
}

Status Daemon::start(uint64_t now_ms) {
    refresh_local_addresses();
    std::vector<std::string> notes;
    auto layout = make_layout(policy_, &notes);
    if (!layout) return layout.error();  // nothing changed yet
    use(policy_, std::move(*layout));
    for (const auto& note : notes) log_->info("{}", note);

    // The mangle rules first: their CONNMARK rule loads and activates conntrack, whose sysctl
    // for accounting exists only from then on. Whatever fails later undoes the chains this start
    // created, per family, and only those.
    std::vector<net::Family> created;
    for (auto family : kFamilies) {
        auto before = ports_.mangle.read(family);
        if (!before || !before->has_value()) created.push_back(family);
    }
    auto undo = [&](Status st) {
        for (auto family : created) (void)ports_.mangle.remove_all(family);
        return st;
    };
    if (auto st = ensure_mangle(policy_, marks_, prefilter_); !st) return undo(st);
    auto acct = ports_.mangle.ensure_conntrack_accounting();
    if (!acct) return undo(acct.error());
    if (!*acct)
        log_->info(
            "conntrack accounting was off in this namespace: switched it on "
            "(net.netfilter.nf_conntrack_acct=1); "
            "connections older than this are not counted");
    log_->info(
        "mangle: chain {} with {} rules per family (restore mark, {}{} DSCP rules); conntrack is active",
        kernel::kMangleChain, 1 + (prefilter_ ? 1 : 0) + policy_.detects.size(),
        prefilter_ ? "candidate flag, " : "", policy_.detects.size());
    if (fw_) {
        // fw classes carry no address: a previous run's per-client marks cannot be adopted.
        if (size_t n = clear_marks(nullptr, marks_.restore_mask()))
            log_->info("fw: cleared {} connection marks of a previous run", n);
    }
    first_device_scan_ = true;
    device_index_.clear();
    refresh_devices();
    adopt(now_ms);
    // apply rolled the devices back; undo what this start added, and only that.
    if (auto st = reconcile_tc(true); !st) return undo(st);
    log_->info("ready: {} devices, {} caps, {} detect rules, poll every {}ms, classifier {}",
               device_index_.size(), policy_.caps.size(), policy_.detects.size(),
               policy_.settings.poll_interval_ms, fw_ ? "fw" : "u32");
    return {};
}

Status Daemon::ensure_mangle(const policy::Policy& policy, const plan::MarkLayout& marks,
                             const std::optional<kernel::MangleSpec::Candidate>& prefilter) {
    auto spec = mangle_spec(policy, marks, prefilter);
    for (auto family : kFamilies)
        if (auto st = ports_.mangle.ensure(family, spec); !st) return st;
    return {};
}

void Daemon::adopt(uint64_t now_ms) {
    for (const auto& iface : policy_.interfaces) {
        auto dev = ports_.tc.read(iface.device);
        if (!dev || dev->root_info.owner != tc::RootInfo::Owner::Ours) continue;
        for (const auto& h : plan::heavy_clients_in(policy_, dev->state)) {
            HeavyKey key{h.rule_index, h.client};
            if (heavy_.count(key)) continue;
            heavy_[key] = {marks_.rule_value(key.rule), true};
            detector_->adopt(h.rule_index, h.client, now_ms);
            log_->info("adopted heavy client {} (rule {}) from the kernel", h.client.str(),
                       policy_.detects[h.rule_index].name);
        }
    }
}

std::optional<uint32_t> Daemon::mark_for(const HeavyKey& key) {
    if (!fw_) return marks_.rule_value(key.rule);
    if (free_client_numbers_.empty()) return std::nullopt;
    uint32_t n = *free_client_numbers_.begin();
    free_client_numbers_.erase(free_client_numbers_.begin());
    return marks_.client_value(key.rule, n);
}

// Drops a heavy client without a release decision (its class could not be made).
void Daemon::forget(std::map<HeavyKey, HeavyState>::iterator it) {
    if (fw_)
        if (auto n = marks_.client_number_of(it->second.mark)) free_client_numbers_.insert(*n);
    detector_->revoke(it->first.rule, it->first.client);
    heavy_.erase(it);
}

Status Daemon::reconcile_tc(bool together) {
    // The devices that exist now; a policy device that does not gets its tree when it appears.
    std::vector<std::string> present;
    for (const auto& iface : policy_.interfaces)
        if (device_index_.count(iface.device)) present.push_back(iface.device);
    // At start every device goes in one apply (all or nothing: a failed start leaves no tree
    // behind); later each device on its own, so that one that fails holds up no other.
    std::vector<std::vector<std::string>> batches;
    if (together && !present.empty()) batches.push_back(present);
    if (!together)
        for (const auto& d : present) batches.push_back({d});
    std::set<std::string> done;
    Status result;
    size_t sent = 0;
    for (const auto& batch : batches) {
        ApplyOptions opts;
        opts.force = options_.force;
        opts.heavy = heavy();
        opts.devices = batch;
        auto report = apply_policy(policy_, ports_.tc, opts);
        if (!report) {
            result = report.error();
            continue;
        }
        sent += report->changes_sent;
        done.insert(batch.begin(), batch.end());
    }
    // A client whose device's tree is in place is capped; one whose device failed or is gone and
    // that was not capped yet is forgotten (the detector decides again later). A capped client
    // whose device went away keeps its place: its class comes back with the device's tree.
    for (auto it = heavy_.begin(); it != heavy_.end();) {
        auto next = std::next(it);
        const std::string& device = policy_.detects[it->first.rule].device;
        if (done.count(device)) {
            it->second.placed = true;
        } else if (!it->second.placed) {
            std::string why = device_index_.count(device)
                                  ? (result ? std::string("not applied") : result.error().text())
                                  : "device " + device + " does not exist";
            log_->error("could not cap client={} rule={}: {}; deciding again later", it->first.client.str(),
                        policy_.detects[it->first.rule].name, why);
            forget(it);
        }
        it = next;
    }
    tc_dirty_ = done.size() != present.size();
    if (sent) log_->debug("tc: {} changes sent", sent);
    return result;
}

void Daemon::refresh_devices() {
    auto links = ports_.links.links();
    if (!links) {
        log_->warn("reading this host's devices: {}", links.error().text());
        return;
    }
    std::map<std::string, int> now;
    for (const auto& l : *links)
        if (policy_.find_interface(l.name)) now[l.name] = l.ifindex;
    for (const auto& iface : policy_.interfaces) {
        auto was = device_index_.find(iface.device);
        auto is = now.find(iface.device);
        if (was != device_index_.end() && is == now.end()) {
            log_->warn("device {} is gone: its tree will be applied again when it comes back", iface.device);
        } else if (was == device_index_.end() && is != now.end()) {
            if (!first_device_scan_) log_->info("device {} appeared: applying its tree", iface.device);
            tc_dirty_ = true;
        } else if (was != device_index_.end() && is != now.end() && was->second != is->second) {
            log_->info("device {} was created again (index {} -> {}): applying its tree", iface.device,
                       was->second, is->second);
            tc_dirty_ = true;
        } else if (first_device_scan_ && is == now.end()) {
            log_->warn("device {} does not exist (yet): its tree is applied when it appears", iface.device);
        }
    }
    device_index_ = std::move(now);
    first_device_scan_ = false;
}

void Daemon::refresh_local_addresses() {
    auto addrs = ports_.links.local_addresses();
    if (!addrs) {
        log_->warn("reading this host's addresses: {}", addrs.error().text());
        return;
    }
    std::sort(addrs->begin(), addrs->end());
    if (*addrs == local_list_) return;
    local_list_ = *addrs;
    local_ = detect::LocalAddresses(local_list_);
    if (detector_) detector_->set_local_addresses(local_list_);
}

std::optional<Daemon::HeavyKey> Daemon::heavy_key_of(const kernel::FlowSample& flow) const {
    auto c = detect::classify(to_detect(flow), local_, policy_.detects);
    if (!c) return std::nullopt;
    HeavyKey key{c->rule, c->client};
    auto it = heavy_.find(key);
    if (it == heavy_.end() || !it->second.placed) return std::nullopt;  // class first, then marks
    if (it->second.releasing) return std::nullopt;
    return key;
}

void Daemon::mark_flows(const std::vector<kernel::FlowSample>& flows) {
    // With the prefilter a heavy client's connections also get the candidate flag, so that the
    // filtered dumps keep measuring all of its traffic (its release depends on it).
    uint32_t mask = marks_.mask();
    for (const auto& f : flows) {
        auto key = heavy_key_of(f);
        if (!key) continue;
        uint32_t want = heavy_.at(*key).mark | marks_.candidate_bit();
        if ((f.mark & mask) == want) continue;
        auto st = ports_.conntrack.set_mark(f, want, mask);
        if (st || st.error().code == ENOENT) continue;  // marked, or ended meanwhile
        // A flow without ports (ICMP and the like) is counted but cannot be named to the
        // kernel by its tuple alone: it keeps no mark. Not worth a warning per flow and poll.
        if (st.error().code == EPROTONOSUPPORT)
            log_->debug("not marking a portless flow of {}: {}", key->client.str(), st.error().text());
        else
            log_->warn("set ctmark on a connection of {}: {}", key->client.str(), st.error().text());
    }
}

size_t Daemon::clear_marks(const std::set<HeavyKey>* only, uint32_t bits, std::set<HeavyKey>* incomplete) {
    const uint32_t mask = bits;
    std::vector<std::pair<kernel::FlowSample, std::optional<HeavyKey>>> marked;
    auto st = ports_.conntrack.dump({}, [&](const kernel::FlowSample& f) {
        if ((f.mark & mask) == 0) return;
        if (!only) {
            marked.emplace_back(f, std::nullopt);
            return;
        }
        auto c = detect::classify(to_detect(f), local_, policy_.detects);
        if (!c) return;
        HeavyKey key{c->rule, c->client};
        if (only->count(key)) marked.emplace_back(f, key);
    });
    if (!st) {
        log_->warn("conntrack dump to clear marks: {}", st.error().text());
        if (incomplete && only) *incomplete = *only;
    }
    size_t cleared = 0;
    for (const auto& [f, key] : marked) {
        auto w = ports_.conntrack.set_mark(f, 0, mask);
        if (w) {
            ++cleared;
        } else if (w.error().code != ENOENT) {
            log_->warn("clear ctmark: {}", w.error().text());
            if (incomplete && key) incomplete->insert(*key);
        }
    }
    return cleared;
}

void Daemon::act(const std::vector<detect::Decision>& decisions) {
    for (const auto& d : decisions) {
        HeavyKey key{d.rule, d.client};
        const auto& rule = policy_.detects[d.rule];
        if (d.kind == detect::DecisionKind::Mark) {
            if (auto it = heavy_.find(key); it != heavy_.end()) {
                if (it->second.releasing) {
                    it->second.releasing = false;  // heavy again before its marks were all cleared
                    log_->info("mark client={} rule={} {} action=keep-cap", d.client.str(), rule.name,
                               d.reason);
                }
                continue;
            }
            auto mark = mark_for(key);
            if (!mark) {
                log_->error(
                    "cannot cap client={} rule={}: all {} per-client fw marks of mark_mask are in use",
                    d.client.str(), rule.name, marks_.max_clients());
                detector_->revoke(d.rule, d.client);
                continue;
            }
            heavy_[key] = {*mark, false};
            tc_dirty_ = true;
            log_->info("mark client={} rule={} {} action=cap rate={} ceil={} dscp={}", d.client.str(),
                       rule.name, d.reason, rate_text(rule.limit.rate_bits_per_s),
                       rate_text(std::max(rule.limit.ceil_bits_per_s, rule.limit.rate_bits_per_s)),
                       rule.dscp);
        } else {
            auto it = heavy_.find(key);
            if (it == heavy_.end()) continue;
            // Undo in reverse order: marks first, then the class (finish_releases). The candidate
            // flag stays: the kernel would set it again on a connection past the threshold
            // anyway, and a flow that left the filtered dumps would come back as new and count
            // its whole total again.
            it->second.releasing = true;
            log_->info("release client={} rule={} {} action=uncap", d.client.str(), rule.name, d.reason);
        }
    }
    finish_releases();
}

void Daemon::finish_releases() {
    // One dump for every client being released, however many there are.
    std::set<HeavyKey> releasing;
    for (const auto& [key, state] : heavy_)
        if (state.releasing) releasing.insert(key);
    if (releasing.empty()) return;
    std::set<HeavyKey> incomplete;
    clear_marks(&releasing, marks_.restore_mask(), &incomplete);
    for (const auto& key : releasing) {
        auto it = heavy_.find(key);
        if (incomplete.count(key)) {
            log_->warn(
                "release client={}: not every connection mark could be cleared; its class stays "
                "until they are (retrying at the next poll)",
                key.client.str());
            continue;
        }
        if (fw_)
            if (auto n = marks_.client_number_of(it->second.mark)) free_client_numbers_.insert(*n);
        heavy_.erase(it);
        tc_dirty_ = true;
    }
}

Result<std::vector<kernel::FlowSample>> Daemon::dump(bool full) {
    kernel::DumpFilter filter;
    if (!full && prefilter_) filter.mark = kernel::DumpFilter::MarkMatch{prefilter_->bit, prefilter_->bit};
    return ports_.conntrack.dump_all(filter);
}

Status Daemon::poll(uint64_t now_ms) {
    bool full = !prefilter_ || full_dump_ || resync_;
    refresh_local_addresses();
    refresh_devices();
    auto flows = dump(full);
    if (!flows) return flows.error();
    resync_ = full_dump_ = false;
    // Connections that ended before the dump reached them sent their DESTROY event before the
    // dump ended: read them now, so that this poll counts their last bytes (and not the next
    // one, which would no longer know them and count their whole total again).
    if (auto st = drain_events(); !st) log_->warn("conntrack events: {}", st.error().text());
    auto samples = to_detect(*flows);
    for (const auto& f : ended_) {
        samples.push_back(to_detect(f));
        samples.back().alive = false;
    }
    ended_.clear();
    act(detector_->observe(now_ms, samples));
    Status st;
    bool placed_new = false;
    if (tc_dirty_) {
        auto placed = [&] {
            return std::count_if(heavy_.begin(), heavy_.end(), [](const auto& h) { return h.second.placed; });
        };
        auto before = placed();
        st = reconcile_tc(false);
        if (!st) log_->error("tc: {} (retrying at the next poll)", st.error().text());
        placed_new = placed() > before;
    }
    if (placed_new && !full) {
        // A client just capped: its small connections are not candidates yet; mark them all.
        auto all = dump(true);
        if (!all) {
            full_dump_ = true;  // the next poll reads the whole table and marks them then
            return all.error();
        }
        mark_flows(*all);
        return st;
    }
    mark_flows(*flows);  // only clients whose class is in the kernel
    return st;
}

Status Daemon::drain_events() {
    constexpr size_t kMaxEnded = 1 << 18;
    std::vector<kernel::FlowSample> fresh;
    auto lost = ports_.conntrack.drain_events([&](const kernel::FlowEvent& e) {
        if (e.type == kernel::FlowEventType::New)
            fresh.push_back(e.flow);
        else if (ended_.size() < kMaxEnded)
            ended_.push_back(e.flow);
    });
    if (!lost) return lost.error();
    if (*lost && !resync_) {
        resync_ = true;  // the next poll's full dump catches up; no extra dump per overflow
        log_->warn("conntrack events were lost (receive buffer full): the next poll resynchronises");
    }
    mark_flows(fresh);
    return {};
}

Status Daemon::on_conntrack_events(uint64_t) {
    return drain_events();
}

Status Daemon::stop() {
    if (policy_.settings.on_exit == policy::OnExit::Keep) {
        log_->info("exit: on_exit = keep, leaving classes, rules and marks in place");
        return {};
    }
    Status result;
    if (marks_.mask() != 0) clear_marks(nullptr, marks_.mask());
    for (auto family : kFamilies)
        if (auto st = ports_.mangle.remove_all(family); !st) result = st;
    for (const auto& iface : policy_.interfaces)
        if (auto st = ports_.tc.remove_root(iface.device); !st && st.error().code != ENODEV) result = st;
    if (result)
        log_->info("exit: removed flowshaper's mangle chains, classes and connection marks");
    else
        log_->error("exit: could not remove everything: {}; 'flowshaper flush' retries",
                    result.error().text());
    return result;
}

Status Daemon::reload(policy::Policy policy, uint64_t now_ms) {
    // Everything the new policy needs is built first; the running one stays on any error.
    std::vector<std::string> notes;
    auto layout = make_layout(policy, &notes);
    if (!layout) return layout.error();
    if (auto st = ensure_mangle(policy, layout->marks, layout->prefilter); !st) {
        (void)ensure_mangle(policy_, marks_, prefilter_);
        return st;
    }
    bool marks_changed = layout->marks.mask() != marks_.mask() ||
                         layout->marks.rule_mask() != marks_.rule_mask() ||
                         layout->marks.candidate_bit() != marks_.candidate_bit() || layout->fw != fw_ ||
                         policy.detects.size() != policy_.detects.size();
    for (size_t i = 0; !marks_changed && i < policy.detects.size(); ++i)
        marks_changed = policy.detects[i].name != policy_.detects[i].name;
    if (marks_changed) {
        // Old marks would name other rules now: clear them; heavy clients are marked again.
        size_t n = clear_marks(nullptr, marks_.mask());
        log_->info("reload: the mark layout changed, cleared {} connection marks", n);
    }
    for (const auto& old : policy_.interfaces)
        if (!policy.find_interface(old.device)) {
            if (auto st = ports_.tc.remove_root(old.device); !st)
                log_->warn("reload: removing the tree of {}: {}", old.device, st.error().text());
            else
                log_->info("reload: {} is no longer in the policy: removed its tree", old.device);
        }
    use(std::move(policy), std::move(*layout));
    for (const auto& note : notes) log_->info("reload: {}", note);
    first_device_scan_ = true;  // warn about the new policy's missing devices, as at start
    refresh_devices();
    adopt(now_ms);
    if (auto st = reconcile_tc(false); !st) return st;  // retried at the next poll
    log_->info("reload: {} devices, {} caps, {} detect rules", policy_.interfaces.size(), policy_.caps.size(),
               policy_.detects.size());
    return {};
}

}  // namespace flowshaper::controller
