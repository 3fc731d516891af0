-- the extension needs shared_preload_libraries (the test instance has it)
CREATE EXTENSION chronicle_raft;
SELECT extname, extversion, extnamespace::regnamespace FROM pg_extension WHERE extname = 'chronicle_raft';
SELECT amname, amtype FROM pg_am WHERE amname = 'chronicle';
SHOW shared_preload_libraries;
