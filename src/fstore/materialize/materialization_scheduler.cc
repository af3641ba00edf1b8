#include "fstore/materialize/materialization_scheduler.h"

#include <spdlog/spdlog.h>

#include "fstore/core/cron.h"

namespace fstore {

namespace {
// How often the thread looks at the schedules: cron's resolution is a minute.
constexpr auto kTickInterval = std::chrono::seconds(15);
}  // namespace

MaterializationScheduler::MaterializationScheduler(Registry* registry,
                                                   MaterializationEngine* engine,
                                                   std::function<TimestampMicros()> now,
                                                   bool start_thread)
    : registry_(registry), engine_(engine), now_(std::move(now)) {
  if (start_thread) thread_ = std::thread([this] { Loop(); });
}

MaterializationScheduler::~MaterializationScheduler() { Stop(); }

void MaterializationScheduler::Stop() {
  {
    std::lock_guard lock(mutex_);
    stopping_ = true;
  }
  wake_.notify_all();
  if (thread_.joinable()) thread_.join();
}

void MaterializationScheduler::Loop() {
  std::unique_lock lock(mutex_);
  while (!stopping_) {
    lock.unlock();
    auto submitted = Tick();
    if (!submitted.ok()) spdlog::warn("materialization scheduler: {}", submitted.status().ToString());
    lock.lock();
    wake_.wait_for(lock, kTickInterval, [&] { return stopping_; });
  }
}

Result<int> MaterializationScheduler::Tick() {
  ARROW_ASSIGN_OR_RAISE(auto feature_sets, registry_->ListFeatureSets(false));
  const TimestampMicros now = now_();
  int submitted = 0;
  for (const FeatureSet& fs : feature_sets) {
    if (fs.materialization_schedule.empty()) continue;
    auto cron = CronSchedule::Parse(fs.materialization_schedule);
    if (!cron.ok()) continue;  // validated on write; an old definition may predate a rule
    ARROW_ASSIGN_OR_RAISE(auto last, registry_->LastScheduledSlot(fs.id));
    TimestampMicros from = last.value_or(fs.created_at);
    // The latest slot in (from, now]: walk forward (slots are minutes apart
    // at least; a long outage is walked once, then only the last one runs).
    std::optional<TimestampMicros> latest;
    TimestampMicros cursor = from;
    while (true) {
      auto next = cron->NextAfter(cursor);
      if (!next.ok() || *next > now) break;
      latest = *next;
      cursor = *next;
    }
    if (!latest) continue;
    ARROW_RETURN_NOT_OK(registry_->SetLastScheduledSlot(fs.id, *latest));
    MaterializationRequest request;
    request.feature_set = fs.id;
    request.trigger = "schedule";
    auto job = engine_->Submit(request);
    // The audit log records scheduled runs like API ones (issue #7): no key,
    // status 0 (not HTTP); the job's own outcome is in its record.
    AuditEvent audit;
    audit.time = now_();
    audit.action = "materialize";
    audit.target = fs.name;
    if (job.ok()) {
      ++submitted;
      spdlog::info("schedule '{}' of {}: slot {} -> job {}", fs.materialization_schedule, fs.name,
                   FormatTimestamp(*latest), job->id);
      audit.outcome = "success";
      audit.detail = "schedule: job " + job->id + " submitted";
    } else {
      spdlog::warn("schedule of {}: cannot submit: {}", fs.name, job.status().ToString());
      audit.outcome = "failure";
      audit.detail = "schedule: cannot submit (" +
                     std::string(ErrorCodeName(ErrorCodeOf(job.status()))) + ")";
    }
    if (Status st = registry_->AppendAudit(audit); !st.ok()) {
      spdlog::error("audit log: could not record the scheduled run of {}: {}", fs.name,
                    st.ToString());
    }
  }
  return submitted;
}

}  // namespace fstore
