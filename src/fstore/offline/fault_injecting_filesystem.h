#pragma once

// Test double: a FileSystem that fails (or takes its storage down) at a
// chosen mutating operation, for the offline store's crash and outage tests
// (after RocksDB's utilities/fault_injection_fs.cc). Header-only; tests only.

#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include <arrow/filesystem/filesystem.h>
#include <arrow/io/interfaces.h>

namespace fstore {

/// A filesystem wrapper that counts the files opened for reading and simulates
/// a crash at the N-th mutating operation: that operation fails, and so does
/// every later call until Recover(), as if the process had died there. With
/// an outage hook set (SetOutage), the N-th mutation instead runs the hook
/// (which takes the real storage down, e.g. cuts the network to S3) and then
/// every call goes through to the base filesystem, to fail there for real.
/// It reports the base's type_name(), so the store treats it as the storage
/// it wraps (object storage or not).
class FaultInjectingFileSystem : public arrow::fs::FileSystem {
 public:
  explicit FaultInjectingFileSystem(std::shared_ptr<arrow::fs::FileSystem> base)
      : base_(std::move(base)) {}

  using arrow::fs::FileSystem::GetFileInfo;
  using arrow::fs::FileSystem::OpenAppendStream;
  using arrow::fs::FileSystem::OpenInputFile;
  using arrow::fs::FileSystem::OpenInputStream;
  using arrow::fs::FileSystem::OpenOutputStream;

  /// Crash at the n-th mutating operation from now (1-based); 0 never.
  void CrashAt(int64_t n) {
    std::lock_guard<std::mutex> lock(mu_);
    crash_at_ = n;
    mutations_ = 0;
    crashed_ = false;
  }
  void Recover() { CrashAt(0); }
  /// Runs `take_down` at the crash point instead of failing (null: fail).
  void SetOutage(std::function<void()> take_down) {
    std::lock_guard<std::mutex> lock(mu_);
    outage_ = std::move(take_down);
  }
  bool crashed() const {
    std::lock_guard<std::mutex> lock(mu_);
    return crashed_;
  }
  int64_t mutations() const {
    std::lock_guard<std::mutex> lock(mu_);
    return mutations_;
  }
  std::vector<std::string> opened() const {
    std::lock_guard<std::mutex> lock(mu_);
    return opened_;
  }
  void ClearOpened() {
    std::lock_guard<std::mutex> lock(mu_);
    opened_.clear();
  }

  // Every call goes through here; mutating ones count towards the crash.
  arrow::Status Check(bool mutating) {
    std::function<void()> outage;
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (crashed_) {
        if (outage_) return arrow::Status::OK();  // the base fails by itself now
        return arrow::Status::IOError("simulated crash (process is dead)");
      }
      if (!mutating || ++mutations_ != crash_at_) return arrow::Status::OK();
      crashed_ = true;
      if (!outage_) return arrow::Status::IOError("simulated crash at mutation ", mutations_);
      outage = outage_;
    }
    outage();
    return arrow::Status::OK();
  }

  std::string type_name() const override { return base_->type_name(); }
  bool Equals(const arrow::fs::FileSystem& other) const override { return this == &other; }
  arrow::Result<arrow::fs::FileInfo> GetFileInfo(const std::string& path) override {
    ARROW_RETURN_NOT_OK(Check(false));
    return base_->GetFileInfo(path);
  }
  arrow::Result<arrow::fs::FileInfoVector> GetFileInfo(
      const arrow::fs::FileSelector& select) override {
    ARROW_RETURN_NOT_OK(Check(false));
    return base_->GetFileInfo(select);
  }
  arrow::Status CreateDir(const std::string& path, bool recursive) override {
    ARROW_RETURN_NOT_OK(Check(true));
    return base_->CreateDir(path, recursive);
  }
  arrow::Status DeleteDir(const std::string& path) override {
    ARROW_RETURN_NOT_OK(Check(true));
    return base_->DeleteDir(path);
  }
  arrow::Status DeleteDirContents(const std::string& path, bool missing_dir_ok) override {
    ARROW_RETURN_NOT_OK(Check(true));
    return base_->DeleteDirContents(path, missing_dir_ok);
  }
  arrow::Status DeleteRootDirContents() override {
    ARROW_RETURN_NOT_OK(Check(true));
    return base_->DeleteRootDirContents();
  }
  arrow::Status DeleteFile(const std::string& path) override {
    ARROW_RETURN_NOT_OK(Check(true));
    return base_->DeleteFile(path);
  }
  arrow::Status Move(const std::string& src, const std::string& dest) override {
    ARROW_RETURN_NOT_OK(Check(true));
    return base_->Move(src, dest);
  }
  arrow::Status CopyFile(const std::string& src, const std::string& dest) override {
    ARROW_RETURN_NOT_OK(Check(true));
    return base_->CopyFile(src, dest);
  }
  arrow::Result<std::shared_ptr<arrow::io::InputStream>> OpenInputStream(
      const std::string& path) override {
    ARROW_RETURN_NOT_OK(Check(false));
    RecordOpen(path);
    return base_->OpenInputStream(path);
  }
  arrow::Result<std::shared_ptr<arrow::io::RandomAccessFile>> OpenInputFile(
      const std::string& path) override {
    ARROW_RETURN_NOT_OK(Check(false));
    RecordOpen(path);
    return base_->OpenInputFile(path);
  }
  arrow::Result<std::shared_ptr<arrow::io::OutputStream>> OpenOutputStream(
      const std::string& path,
      const std::shared_ptr<const arrow::KeyValueMetadata>& metadata) override {
    ARROW_RETURN_NOT_OK(Check(true));
    ARROW_ASSIGN_OR_RAISE(auto out, base_->OpenOutputStream(path, metadata));
    return std::make_shared<Output>(this, std::move(out));
  }
  arrow::Result<std::shared_ptr<arrow::io::OutputStream>> OpenAppendStream(
      const std::string& path,
      const std::shared_ptr<const arrow::KeyValueMetadata>& metadata) override {
    return arrow::Status::NotImplemented("append");
  }

 private:
  // Writes count as one mutation at Close: a crash there leaves the bytes
  // written so far in the file, never moved into place.
  class Output : public arrow::io::OutputStream {
   public:
    Output(FaultInjectingFileSystem* fs, std::shared_ptr<arrow::io::OutputStream> base)
        : fs_(fs), base_(std::move(base)) {}
    arrow::Status Close() override {
      ARROW_RETURN_NOT_OK(fs_->Check(true));
      return base_->Close();
    }
    arrow::Result<int64_t> Tell() const override { return base_->Tell(); }
    bool closed() const override { return base_->closed(); }
    arrow::Status Write(const void* data, int64_t nbytes) override {
      ARROW_RETURN_NOT_OK(fs_->Check(false));
      return base_->Write(data, nbytes);
    }

   private:
    FaultInjectingFileSystem* fs_;
    std::shared_ptr<arrow::io::OutputStream> base_;
  };

  void RecordOpen(const std::string& path) {
    std::lock_guard<std::mutex> lock(mu_);
    opened_.push_back(path);
  }

  std::shared_ptr<arrow::fs::FileSystem> base_;
  mutable std::mutex mu_;
  int64_t crash_at_ = 0;
  int64_t mutations_ = 0;
  bool crashed_ = false;
  std::function<void()> outage_;
  std::vector<std::string> opened_;
};

}  // namespace fstore
