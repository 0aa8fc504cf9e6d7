#include "flowshaper/controller/log.hpp"

#include <spdlog/details/log_msg.h>
#include <spdlog/pattern_formatter.h>
#include <spdlog/sinks/base_sink.h>
#include <spdlog/sinks/stdout_sinks.h>

#include <cstdlib>
#include <mutex>
#include <optional>

namespace flowshaper::controller {

namespace {

// "%*": the sd-daemon priority prefix for the message's level.
class PriorityFlag final : public spdlog::custom_flag_formatter {
public:
    void format(const spdlog::details::log_msg& msg, const std::tm&, spdlog::memory_buf_t& dest) override {
        static constexpr const char* kPrefix[] = {"<7>", "<7>", "<6>", "<4>", "<3>", "<2>", ""};
        const char* p = kPrefix[static_cast<int>(msg.level)];
        dest.append(p, p + std::char_traits<char>::length(p));
    }
    std::unique_ptr<custom_flag_formatter> clone() const override { return std::make_unique<PriorityFlag>(); }
};

class MemorySink final : public spdlog::sinks::base_sink<std::mutex> {
public:
    explicit MemorySink(std::shared_ptr<std::vector<std::string>> lines) : lines_(std::move(lines)) {}

protected:
    void sink_it_(const spdlog::details::log_msg& msg) override {
        lines_->emplace_back(msg.payload.begin(), msg.payload.end());
    }
    void flush_() override {}

private:
    std::shared_ptr<std::vector<std::string>> lines_;
};

}  // namespace

std::shared_ptr<spdlog::logger> make_stderr_logger(std::optional<bool> journal) {
    bool prefix = journal.value_or(std::getenv("JOURNAL_STREAM") != nullptr);
    auto sink = std::make_shared<spdlog::sinks::stderr_sink_mt>();
    auto formatter = std::make_unique<spdlog::pattern_formatter>();
    formatter->add_flag<PriorityFlag>('*');
    formatter->set_pattern(prefix ? "%*%v" : "%Y-%m-%d %H:%M:%S.%e %l: %v");
    sink->set_formatter(std::move(formatter));
    auto logger = std::make_shared<spdlog::logger>("flowshaper", sink);
    logger->set_level(spdlog::level::info);
    logger->flush_on(spdlog::level::trace);
    return logger;
}

std::shared_ptr<spdlog::logger> make_memory_logger(std::shared_ptr<std::vector<std::string>> lines) {
    auto logger =
        std::make_shared<spdlog::logger>("flowshaper-test", std::make_shared<MemorySink>(std::move(lines)));
    logger->set_level(spdlog::level::debug);
    return logger;
}

}  // namespace flowshaper::controller
