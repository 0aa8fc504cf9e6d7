#include "flowshaper/policy/loader.hpp"

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <memory>

#include "draft.hpp"

namespace flowshaper::policy {

namespace {

const std::vector<std::string_view> kTopKeys{"settings", "interface", "cap", "detect", "export"};

struct FileCloser {
    void operator()(std::FILE* f) const { std::fclose(f); }
};

Diagnostic syntax_error(const detail::Sink& sink, const toml::parse_error& error) {
    SourceLoc at = sink.loc(error.source());
    return Diagnostic{at, Severity::Error, std::string(error.description())};
}

void read_top_level(detail::Sink& sink, const toml::table& root, detail::Draft& draft) {
    const SourceLoc file_loc{sink.file(), 1, 1};
    detail::TableReader r(sink, root, "", file_loc, kTopKeys);
    if (const toml::node* n = r.node("settings"))
        detail::read_settings(sink, *n, r.value_loc("settings"), draft.policy.settings);
    if (const toml::node* n = r.node("interface"))
        detail::read_interfaces(sink, *n, r.value_loc("interface"), draft);
    if (const toml::node* n = r.node("cap")) detail::read_caps(sink, *n, r.value_loc("cap"), draft);
    if (const toml::node* n = r.node("detect")) detail::read_detects(sink, *n, r.value_loc("detect"), draft);
    if (const toml::node* n = r.node("export")) detail::read_exports(sink, *n, r.value_loc("export"), draft);
}

}  // namespace

std::string Diagnostic::format() const {
    static constexpr const char* kSeverity[] = {"error", "warning", "note"};
    std::string out = loc.file;
    if (loc.line != 0)
        out.append(":").append(std::to_string(loc.line)).append(":").append(std::to_string(loc.column));
    return out + ": " + kSeverity[static_cast<int>(severity)] + ": " + message;
}

const Interface* Policy::find_interface(const std::string& device) const {
    for (const Interface& iface : interfaces)
        if (iface.device == device) return &iface;
    return nullptr;
}

LoadResult load_string(std::string_view text, const std::string& file) {
    detail::Sink sink(file);
    LoadResult result;
    toml::parse_result parsed = toml::parse(text, std::string_view(file));
    if (!parsed) {
        result.diagnostics.push_back(syntax_error(sink, parsed.error()));
        return result;
    }
    detail::Draft draft;
    draft.policy.file = file;
    draft.policy.settings.loc = SourceLoc{file, 0, 0};
    read_top_level(sink, parsed.table(), draft);
    detail::check_policy(sink, draft);
    bool failed = sink.has_errors();
    result.diagnostics = sink.take();
    if (!failed) result.policy = std::move(draft.policy);
    return result;
}

LoadResult load_file(const std::string& path) {
    std::unique_ptr<std::FILE, FileCloser> f(std::fopen(path.c_str(), "rb"));
    std::string text;
    int error = f ? 0 : errno;
    std::string why;
    if (f) {
        char buf[65536];
        size_t n = 0;
        while ((n = std::fread(buf, 1, sizeof buf, f.get())) > 0) {
            text.append(buf, n);
            if (text.size() > kMaxPolicyBytes) {  // /dev/zero, a log file named by mistake
                why = "larger than " + std::to_string(kMaxPolicyBytes >> 20) + " MiB: not a policy file";
                break;
            }
        }
        if (why.empty() && std::ferror(f.get())) error = errno ? errno : EIO;
    }
    if (error != 0) why = std::string("cannot read: ") + std::strerror(error);
    if (!why.empty()) {
        LoadResult result;
        result.diagnostics.push_back(Diagnostic{SourceLoc{path, 0, 0}, Severity::Error, why});
        return result;
    }
    return load_string(text, path);
}

}  // namespace flowshaper::policy
