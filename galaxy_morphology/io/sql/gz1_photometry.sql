-- Galaxy Zoo 1 table 2 (zooSpec: one row per DR7 spectrum, primary key specobjid) with the DR8+
-- photometry of its objid (PhotoObjAll), its spectrum (SpecObjAll) and its MPA-JHU stellar mass
-- (galSpecExtra). Sent by galaxy_morphology/io/skyserver.py, which fills the placeholders
-- {top} ("TOP 50000", or empty in the count query), {after_specobjid} (keyset paging on zooSpec's
-- clustered primary key) and {order_by}.
--
-- Every join is a LEFT JOIN on the joined table's primary key, so the query returns exactly one
-- row per zooSpec row: nothing is dropped on the server. photo_mode, science_primary and
-- galspec_row say what each join found; the ingest counts and drops rows from them
-- (galaxy_morphology/core/stages.py):
--   photo_mode       NULL: no PhotoObjAll row; 1 primary, 2 secondary (the PhotoObj view), 3 other
--   science_primary  NULL: no SpecObjAll row; 1 for the SpecObj view, 0 for another spectrum
--   galspec_row      1 when galSpecExtra has the spectrum, 0 when not (stellar_mass is then -9999)
-- Output column    <- SkyServer column
--   specobjid      <- zooSpec.specobjid (row key; unique)
--   objid          <- zooSpec.objid (DR8 objID; two zooSpec rows can share one)
--   dr7objid       <- zooSpec.dr7objid
--   ra, dec        <- PhotoObjAll.ra, PhotoObjAll.dec (degrees)
--   redshift       <- SpecObjAll.z
--   mag_u .. mag_z <- PhotoObjAll.dered_u .. dered_z (model magnitudes, extinction corrected)
--   deVRad_r, deVAB_r, expRad_r, expAB_r, fracDeV_r, petroR50_r, petroR90_r, lnLDeV_r, lnLExp_r
--                  <- PhotoObjAll columns of the same name (r band)
--   stellar_mass   <- galSpecExtra.lgm_tot_p50 (log10 M*/Msun; -9999 where absent)
--   votes          <- zooSpec.nvote
--   p_el_debiased, p_cs_debiased, spiral, elliptical, uncertain <- zooSpec columns of the same name
SELECT {top}
    zs.specobjid AS specobjid,
    zs.objid AS objid,
    zs.dr7objid AS dr7objid,
    p.mode AS photo_mode,
    s.sciencePrimary AS science_primary,
    CASE WHEN g.specObjID IS NULL THEN 0 ELSE 1 END AS galspec_row,
    p.ra AS ra,
    p.dec AS dec,
    s.z AS redshift,
    p.dered_u AS mag_u,
    p.dered_g AS mag_g,
    p.dered_r AS mag_r,
    p.dered_i AS mag_i,
    p.dered_z AS mag_z,
    p.deVRad_r AS deVRad_r,
    p.deVAB_r AS deVAB_r,
    p.expRad_r AS expRad_r,
    p.expAB_r AS expAB_r,
    p.fracDeV_r AS fracDeV_r,
    p.petroR50_r AS petroR50_r,
    p.petroR90_r AS petroR90_r,
    p.lnLDeV_r AS lnLDeV_r,
    p.lnLExp_r AS lnLExp_r,
    ISNULL(g.lgm_tot_p50, -9999) AS stellar_mass,
    zs.nvote AS votes,
    zs.p_el_debiased AS p_el_debiased,
    zs.p_cs_debiased AS p_cs_debiased,
    zs.spiral AS spiral,
    zs.elliptical AS elliptical,
    zs.uncertain AS uncertain
FROM zooSpec AS zs
    LEFT JOIN PhotoObjAll AS p ON p.objID = zs.objid
    LEFT JOIN SpecObjAll AS s ON s.specObjID = zs.specobjid
    LEFT JOIN galSpecExtra AS g ON g.specObjID = zs.specobjid
WHERE zs.specobjid > {after_specobjid}
{order_by}
