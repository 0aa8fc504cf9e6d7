#include "flowshaper/controller/daemon.hpp"

#include <spdlog/fmt/fmt.h>

#include <algorithm>
#include <cerrno>

#include "flowshaper/controller/apply.hpp"
#include "flowshaper/plan/mangle_spec.hpp"
#include "flowshaper/policy/units.hpp"

namespace flowshaper::controller {

namespace {

constexpr net::Family kFamilies[] = {net::Family::V4, net::Family::V6};

// Errors of a backend that is not there at all (no ip_tables, no nf_tables): nothing of ours is.
bool backend_absent(int code) {
    return code == ENOPROTOOPT || code == EPROTONOSUPPORT || code == EAFNOSUPPORT;
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
    : policy_(std::move(policy)),
      ports_(ports),
      log_(std::move(log)),
      options_(std::move(options)),
      marker_(ports.conntrack, *log_),
      devices_(ports.links, *log_) {
    started_unix_ms_ = wall_now();
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
    dopts.leaf_queue_ms = policy.settings.leaf_queue_ms;
    layout.detector = std::make_unique<detect::Detector>(policy.detects, local_list_, dopts);
    if (notes) {
        *notes = resolved->notes;
        if (layout.prefilter)
            notes->push_back(fmt::format(
                "conntrack prefilter: the kernel flags connections past {} bytes with ctmark bit {:#x} "
                "(iptables: xt_connbytes, nftables: ct bytes); polls read only those and the heavy clients' "
                "connections",
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
    tc_dirty_ = true;
    labels_dirty_ = true;
    full_dump_ = true;
}

uint64_t Daemon::wall_now() const {
    if (options_.wall_ms) return options_.wall_ms();
    using namespace std::chrono;
    return static_cast<uint64_t>(duration_cast<milliseconds>(system_clock::now().time_since_epoch()).count());
}

void Daemon::record_error(const std::string& text) {
    log_->error("{}", text);
    ++counters_.errors;
    errors_.push_back({wall_now(), text});
    while (errors_.size() > 20) errors_.pop_front();
}

void Daemon::audit(AuditEvent event) {
    event.at_unix_ms = wall_now();
    if (options_.audit) options_.audit(event);
}

void Daemon::set_policy_source(std::string path, std::string checksum, uint64_t loaded_unix_ms) {
    policy_path_ = std::move(path);
    policy_checksum_ = std::move(checksum);
    policy_loaded_unix_ms_ = loaded_unix_ms;
}

Status Daemon::start(uint64_t now_ms) {
    refresh_local_addresses();
    std::vector<std::string> notes;
    auto layout = make_layout(policy_, &notes);
    if (!layout) return layout.error();  // nothing changed yet
    use(policy_, std::move(*layout));
    heavy_.reset(marks_, fw_);
    for (const auto& note : notes) log_->info("{}", note);

    // The mangle rules first: their CONNMARK rule loads and activates conntrack, whose sysctl
    // for accounting exists only from then on. Whatever fails later undoes the chains this start
    // created, per family, and only those.
    std::vector<net::Family> absent, tried;  // no objects of ours before; ensure() reached
    for (auto family : kFamilies) {
        auto before = ports_.mangle.read(family);
        if (!before || !before->has_value()) absent.push_back(family);
    }
    auto undo = [&](Status st) {
        for (auto family : absent)
            if (std::find(tried.begin(), tried.end(), family) == tried.end())
                continue;  // this start wrote nothing there
            else if (auto u = ports_.mangle.remove_all(family); !u && !backend_absent(u.error().code))
                log_->error(
                    "start failed; undoing it, the mangle chain ({}) stays: {}; 'flowshaper flush' removes "
                    "it",
                    family == net::Family::V4 ? "IPv4" : "IPv6", u.error().text());
        return st;
    };
    if (auto st = ensure_mangle(policy_, marks_, prefilter_, &tried); !st) return undo(st);
    auto acct = ports_.mangle.ensure_conntrack_accounting();
    if (!acct) return undo(acct.error());
    if (!*acct)
        log_->info(
            "conntrack accounting was off in this namespace: switched it on "
            "(net.netfilter.nf_conntrack_acct=1); it stays on after flowshaper exits (other tools may "
            "read the counters from now on; set it back with sysctl if you must); connections older "
            "than this are not counted");
    const std::string backend = ports_.mangle.backend();
    log_->info("mangle ({}): {}, per family the mark restore, {}{} DSCP rules; conntrack is active", backend,
               backend == "nftables" ? std::string("table inet ") + kernel::kNftTable
                                     : std::string("chain ") + kernel::kMangleChain,
               prefilter_ ? "the candidate flag, " : "", policy_.detects.size());
    devices_.restart();
    devices_.refresh(policy_);
    adopt(now_ms);
    // apply rolled the devices back; undo what this start added, and only that.
    if (auto st = reconcile_tc(true); !st) return undo(st);
    prune_capped();  // members a previous run left for clients that are not capped any more
    sync_capped();
    log_->info("ready: {} devices, {} caps, {} detect rules, poll every {}ms, classifier {}",
               devices_.count(), policy_.caps.size(), policy_.detects.size(),
               policy_.settings.poll_interval_ms, fw_ ? "fw" : "u32");
    publish(now_ms);
    return {};
}

Status Daemon::ensure_mangle(const policy::Policy& policy, const plan::MarkLayout& marks,
                             const std::optional<kernel::MangleSpec::Candidate>& prefilter,
                             std::vector<net::Family>* tried) {
    // With kernel sets (u32 only: the set rule writes the rule's mark, fw needs a per-client one)
    // the kernel marks a capped client's new connections from their first packet.
    bool sets = ports_.mangle.has_kernel_sets() && marks.client_mask() == 0;
    auto spec = plan::mangle_spec(policy, marks, prefilter, sets);
    for (auto family : kFamilies) {
        if (tried) tried->push_back(family);
        if (auto st = ports_.mangle.ensure(family, spec); !st) return st;
    }
    sets_ = sets;
    return {};
}

void Daemon::sync_capped() {
    if (!sets_) return;
    for (const auto& [key, e] : heavy_.entries())
        if (e.placed && !e.releasing)
            if (auto st = ports_.mangle.add_capped({key.rule, key.client}); !st)
                record_error("add " + key.client.str() + " to the kernel set of capped clients: " +
                             st.error().text() + " (its connections are marked by the daemon instead)");
}

void Daemon::prune_capped() {
    if (!sets_) return;
    auto members = ports_.mangle.read_capped();
    if (!members) {
        log_->warn("reading the kernel sets of capped clients: {}", members.error().text());
        return;
    }
    for (const auto& m : *members) {
        const HeavyEntry* e = heavy_.find({m.rule, m.client});
        if (e && e->placed && !e->releasing) continue;
        if (auto st = ports_.mangle.remove_capped(m); !st)
            log_->warn("remove {} from the kernel set of capped clients: {}", m.client.str(),
                       st.error().text());
    }
}

Status Daemon::reconcile_tc(bool together) {
    // The devices that exist now; a policy device that does not gets its tree when it appears.
    std::vector<std::string> present;
    for (const auto& iface : policy_.interfaces)
        if (devices_.present(iface.device)) present.push_back(iface.device);
    // At start every device goes in one apply (all or nothing: a failed start leaves no tree
    // behind); later each device on its own, so that one that fails holds up no other.
    std::vector<std::vector<std::string>> batches;
    if (together && !present.empty()) batches.push_back(present);
    if (!together)
        for (const auto& d : present) batches.push_back({d});
    std::set<std::string> done;
    Status result;
    for (const auto& batch : batches) {
        ApplyOptions opts;
        opts.force = options_.force;
        opts.heavy = heavy();
        opts.devices = batch;
        opts.remembered = &applied_;
        auto report = apply_policy(policy_, ports_.tc, opts);
        if (!report) {
            result = report.error();
            for (const auto& d : batch) device_error_[d] = report.error().text();
            continue;
        }
        counters_.kernel_changes += report->changes_sent;
        if (report->changes_sent) log_->debug("tc: {} changes sent", report->changes_sent);
        for (const auto& d : batch) device_error_.erase(d);
        for (auto& [device, state] : report->desired) applied_[device] = std::move(state);
        done.insert(batch.begin(), batch.end());
    }
    // A client whose device's tree is in place is capped; one whose device failed or is gone and
    // that was not capped yet is forgotten (the detector decides again later). A capped client
    // whose device went away keeps its place: its class comes back with the device's tree.
    std::vector<HeavyKey> unplaced;
    for (auto& [key, entry] : heavy_.entries()) {
        const std::string& device = policy_.detects[key.rule].device;
        if (done.count(device))
            heavy_.find(key)->placed = true;
        else if (!entry.placed)
            unplaced.push_back(key);
    }
    for (const auto& key : unplaced) {
        const std::string& device = policy_.detects[key.rule].device;
        std::string why = devices_.present(device)
                              ? (result ? std::string("not applied") : result.error().text())
                              : "device " + device + " does not exist";
        record_error(fmt::format("could not cap client={} rule={}: {}; deciding again later",
                                 key.client.str(), policy_.detects[key.rule].name, why));
        heavy_.drop(key);
        detector_->revoke(key.rule, key.client);
    }
    tc_dirty_ = done.size() != present.size();
    labels_dirty_ = true;
    sync_capped();  // class first, then the kernel's marks
    return result;
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

void Daemon::act(const std::vector<detect::Decision>& decisions, uint64_t now_ms) {
    for (const auto& d : decisions) {
        HeavyKey key{d.rule, d.client};
        const auto& rule = policy_.detects[d.rule];
        AuditEvent ev{0,          "",          d.client.str(),
                      rule.name,  rule.device, detect::to_string(d.measure),
                      d.measured, d.threshold, d.reason};
        if (d.kind == detect::DecisionKind::Mark) {
            if (auto* e = heavy_.find(key)) {
                if (e->releasing) {
                    e->releasing = false;  // heavy again before its marks were all cleared
                    log_->info("mark client={} rule={} {} action=keep-cap", d.client.str(), rule.name,
                               d.reason);
                }
                continue;
            }
            auto mark = heavy_.add(
                key, HeavyWhy{detect::to_string(d.measure), d.measured, d.threshold, d.reason, now_ms});
            if (!mark) {
                record_error(fmt::format(
                    "cannot cap client={} rule={}: all {} per-client fw marks of mark_mask are in use",
                    d.client.str(), rule.name, marks_.max_clients()));
                detector_->revoke(d.rule, d.client);
                continue;
            }
            tc_dirty_ = true;
            ++counters_.caps_applied;
            ev.action = "cap";
            audit(ev);
            log_->info("mark client={} rule={} {} action=cap rate={} ceil={} dscp={}", d.client.str(),
                       rule.name, d.reason, rate_text(rule.limit.rate_bits_per_s),
                       rate_text(std::max(rule.limit.ceil_bits_per_s, rule.limit.rate_bits_per_s)),
                       rule.dscp);
        } else {
            auto* e = heavy_.find(key);
            if (!e) continue;
            // Undo in reverse order: marks first, then the class (finish_releases). The candidate
            // flag stays: the kernel would set it again on a connection past the threshold
            // anyway, and a flow that left the filtered dumps would come back as new and count
            // its whole total again.
            e->releasing = true;
            ++counters_.caps_released;
            ev.action = "release";
            audit(ev);
            log_->info("release client={} rule={} {} action=uncap", d.client.str(), rule.name, d.reason);
        }
    }
    finish_releases();
}

void Daemon::finish_releases() {
    // One dump for every client being released, however many there are.
    auto releasing = heavy_.releasing();
    if (releasing.empty()) return;
    // Out of the kernel set first, or the kernel would mark its new connections again.
    if (sets_)
        for (const auto& key : releasing)
            if (auto st = ports_.mangle.remove_capped({key.rule, key.client}); !st)
                log_->warn("remove {} from the kernel set of capped clients: {}", key.client.str(),
                           st.error().text());
    std::set<HeavyKey> incomplete;
    marker_.clear(mark_context(), &releasing, marks_.restore_mask(), &incomplete);
    for (const auto& key : releasing) {
        if (incomplete.count(key)) {
            log_->warn(
                "release client={}: not every connection mark could be cleared; its class stays "
                "until they are (retrying at the next poll)",
                key.client.str());
            continue;
        }
        heavy_.finish_release(key);
        tc_dirty_ = true;
    }
}

Result<std::vector<kernel::FlowSample>> Daemon::dump(bool full) {
    kernel::DumpFilter filter;
    if (!full && prefilter_) filter.mark = kernel::DumpFilter::MarkMatch{prefilter_->bit, prefilter_->bit};
    return ports_.conntrack.dump_all(filter);
}

Status Daemon::poll(uint64_t now_ms) {
    auto t0 = std::chrono::steady_clock::now();
    bool readers_full =
        std::any_of(readers_.begin(), readers_.end(), [](auto* r) { return r->wants_full_dump(); });
    bool full = !prefilter_ || full_dump_ || resync_ || readers_full;
    refresh_local_addresses();
    if (devices_.refresh(policy_)) tc_dirty_ = true;
    auto flows = dump(full);
    if (!flows) {
        record_error("poll: conntrack dump: " + flows.error().text());
        return flows.error();
    }
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
    for (auto* r : readers_) r->on_poll(now_ms, *flows, full, ended_, local_);
    ended_.clear();
    act(detector_->observe(now_ms, samples), now_ms);
    Status st;
    bool placed_new = false;
    if (tc_dirty_) {
        auto before = heavy_.placed();
        st = reconcile_tc(false);
        if (!st) record_error("tc: " + st.error().text() + " (retrying at the next poll)");
        placed_new = heavy_.placed() > before;
    }
    last_poll_.full = full;
    last_poll_.entries = flows->size();
    ++counters_.polls;
    counters_.conntrack_entries_read += flows->size();
    if (placed_new && !full) {
        // A client just capped: its small connections are not candidates yet; mark them all.
        auto all = dump(true);
        if (!all) {
            full_dump_ = true;  // the next poll reads the whole table and marks them then
            st = all.error();
        } else {
            marker_.mark(mark_context(), *all);
        }
    } else {
        marker_.mark(mark_context(), *flows);  // only clients whose class is in the kernel
    }
    double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    last_poll_.duration_us = static_cast<uint64_t>(secs * 1e6);
    last_poll_.at_unix_ms = wall_now();
    counters_.observe_poll(secs);
    publish(now_ms);
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
    if (*lost) {
        ++counters_.events_lost;
        ++last_poll_.events_lost;
        if (!resync_)
            log_->warn("conntrack events were lost (receive buffer full): the next poll resynchronises");
        resync_ = true;  // the next poll's full dump catches up; no extra dump per overflow
    }
    marker_.mark(mark_context(), fresh);
    return {};
}

uint8_t Daemon::dscp_of(uint32_t mark) const {
    auto rule = marks_.rule_of(mark & marks_.restore_mask());
    return rule && *rule < policy_.detects.size() ? policy_.detects[*rule].dscp : 0;
}

Status Daemon::on_conntrack_events(uint64_t) {
    return drain_events();
}

Result<size_t> Daemon::repair(const std::string& why, uint64_t now_ms) {
    auto before = counters_.kernel_changes;
    if (devices_.refresh(policy_)) tc_dirty_ = true;
    auto commits = ports_.mangle.commits();
    Status result = ensure_mangle(policy_, marks_, prefilter_);
    if (!result) record_error("repair mangle rules: " + result.error().text());
    counters_.kernel_changes += ports_.mangle.commits() - commits;  // a commit per family rewritten
    sync_capped();  // a table someone deleted comes back empty
    if (auto st = reconcile_tc(false); !st) {
        record_error("repair tc: " + st.error().text());
        result = st;
    }
    size_t changes = counters_.kernel_changes - before;
    if (changes) {
        ++counters_.drift_repairs;
        log_->warn("repaired flowshaper's objects ({}): {} kernel changes", why, changes);
        audit(
            AuditEvent{0, "repair", "", "", "", "", 0, 0, why + ": " + std::to_string(changes) + " changes"});
    }
    publish(now_ms);
    if (!result) return result.error();
    return changes;
}

Status Daemon::stop() {
    if (policy_.settings.on_exit == policy::OnExit::Keep) {
        log_->info("exit: on_exit = keep, leaving classes, rules and marks in place");
        return {};
    }
    Status result;
    if (marks_.mask() != 0) marker_.clear(mark_context(), nullptr, marks_.mask());
    for (auto family : kFamilies)
        if (auto st = ports_.mangle.remove_all(family); !st) result = st;
    for (const auto& iface : policy_.interfaces)
        if (auto st = ports_.tc.remove_root(iface.device); !st && st.error().code != ENODEV) result = st;
    if (result)
        log_->info(
            "exit: removed flowshaper's mangle chains, classes and connection marks "
            "(net.netfilter.nf_conntrack_acct stays as it is)");
    else
        log_->error("exit: could not remove everything: {}; 'flowshaper flush' retries",
                    result.error().text());
    return result;
}

}  // namespace flowshaper::controller
