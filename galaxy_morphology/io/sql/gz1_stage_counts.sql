-- Per-stage row counts of gz1_photometry.sql, in one pass on the server (one row). Same joins and
-- window ({after_specobjid}); each stage keeps the rows of the stage before it that also pass:
--   zoospec       every zooSpec row (GZ1 table 2: 667,944 in DR17)
--   photoobj      its objid is in the PhotoObj view (PhotoObjAll with mode 1 or 2)
--   specobj       its specobjid is in the SpecObj view (SpecObjAll with sciencePrimary = 1)
--   galspec       galSpecExtra has its specobjid
--   stellar_mass  and lgm_tot_p50 is not the -9999 sentinel
-- labelled: spiral = 1 or elliptical = 1. distinct_objids < zoospec_rows when objids repeat.
-- galaxy_morphology/core/stages.py computes the same numbers from the fetched rows
-- (StageCounts.from_table); running this query in SkyServer's SQL search checks an ingest.
SELECT
    COUNT_BIG(*) AS zoospec_rows,
    COUNT_BIG(DISTINCT zs.objid) AS distinct_objids,
    SUM(CASE WHEN zs.spiral = 1 OR zs.elliptical = 1 THEN 1 ELSE 0 END) AS zoospec_labelled,
    SUM(CASE WHEN p.mode IN (1, 2) THEN 1 ELSE 0 END) AS photoobj_rows,
    SUM(CASE WHEN p.mode IN (1, 2) AND s.sciencePrimary = 1 THEN 1 ELSE 0 END) AS specobj_rows,
    SUM(CASE WHEN p.mode IN (1, 2) AND s.sciencePrimary = 1 AND g.specObjID IS NOT NULL
        THEN 1 ELSE 0 END) AS galspec_rows,
    SUM(CASE WHEN p.mode IN (1, 2) AND s.sciencePrimary = 1 AND g.lgm_tot_p50 <> -9999
        THEN 1 ELSE 0 END) AS stellar_mass_rows,
    SUM(CASE WHEN p.mode IN (1, 2) AND s.sciencePrimary = 1 AND g.lgm_tot_p50 <> -9999
        AND (zs.spiral = 1 OR zs.elliptical = 1) THEN 1 ELSE 0 END) AS stellar_mass_labelled
FROM zooSpec AS zs
    LEFT JOIN PhotoObjAll AS p ON p.objID = zs.objid
    LEFT JOIN SpecObjAll AS s ON s.specObjID = zs.specobjid
    LEFT JOIN galSpecExtra AS g ON g.specObjID = zs.specobjid
WHERE zs.specobjid > {after_specobjid}
